"""The model registry: ``list_models()`` and ``get_model(name, **kwargs)``,
as in torchvision. Each builder function registers itself with
``@register_model`` (its function name is the model's name)."""
_builders = {}


def register_model(fn):
    """Decorator: make ``fn`` available as ``get_model(fn.__name__)``."""
    if fn.__name__ in _builders:
        raise ValueError(f"register_model: a model named {fn.__name__!r} is already registered")
    _builders[fn.__name__] = fn
    return fn


def list_models():
    """The names of all registered models, sorted."""
    return sorted(_builders)


def get_model(name, **kwargs):
    """Build model ``name`` with ``kwargs`` (e.g. ``num_classes=10``)."""
    if name not in _builders:
        raise ValueError(f"get_model: unknown model {name!r}; known models: {', '.join(list_models())}")
    return _builders[name](**kwargs)
