"""Numba's disk cache for this package: any edit here recompiles every kernel.

Why
---
A function compiled with ``cache=True`` is saved to disk with a *stamp*
of its source, and a later process reuses the saved code while the stamp
matches. Numba stamps a function with its own file only. But a kernel's
compiled code also holds the helpers it calls from other files: a helper
of ``loops.py`` marked ``inline="always"`` is inlined into it, a plain
jitted one linked into it. Edit ``loops.py`` and the kernels of
``im2col.py``, their files unchanged, would go on running the old helper.

How
---
For each cached function Numba asks the classes of
``CacheImpl._locator_classes`` in turn; the first that accepts the
function's file (a *locator*) says where its cache lives and gives the
stamp. ``install()`` puts three locators first in that list: Numba's own
(the ``NUMBA_CACHE_DIR`` folder; the ``__pycache__`` folder beside the
source; the user-wide cache folder), changed in two ways. They accept only
the files of this package, and their stamp is ``package_stamp()``, a hash
of every ``.py`` file here: an edit to any of them makes every kernel's
saved code stale, and each is compiled anew on its next call (once), while
an unchanged package reuses the cache as before. Code outside the package
is none of their business: Numba's own locators still serve it.

The locators must be in place before a kernel is decorated: every kernel
module imports ``loops.py`` first, which calls ``install()`` before its
own kernels (``special.py``, which compiles erf on first use, calls it
itself). ``install()`` imports Numba, so the package's ``__init__.py``
must not call it: ``import minicnn`` stays free of Numba. It relies on
names private to Numba; where a release renames them, ``install()`` does
nothing and the cache is Numba's per-file one again. A
``NUMBA_CACHE_LOCATOR_CLASSES`` setting replaces the list, and wins.
"""
import functools
import hashlib
import os

#: The package's folder, as locators compare it.
PACKAGE = os.path.normcase(os.path.dirname(os.path.realpath(__file__)))


def package_stamp(folder=PACKAGE):
    """A digest of the names and contents of the ``.py`` files in
    ``folder``: it changes when one of them is edited, added or removed,
    and not when a file is merely touched (as a checkout does)."""
    names = sorted(name for name in os.listdir(folder) if name.endswith(".py"))
    stats = [os.stat(os.path.join(folder, name)) for name in names]
    return _digest(folder, tuple((name, st.st_mtime_ns, st.st_size) for name, st in zip(names, stats)))


@functools.lru_cache(maxsize=None)
def _digest(folder, stats):
    """sha256 over the names and contents of the files of ``stats``
    ((name, mtime, size) each): the memo's key, so that every kernel asks
    but the files are read again only when one of them changes."""
    digest = hashlib.sha256()
    for name, _, _ in stats:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        digest.update(b"%s\0%d\0" % (name.encode(), len(data)))
        digest.update(data)
    return digest.hexdigest()


def _in_package(py_file):
    """Whether ``py_file`` is one of this package's files."""
    return os.path.normcase(os.path.dirname(os.path.realpath(py_file))) == PACKAGE


class _PackageStamp:
    """What the package's locators add to Numba's: they accept only this
    package's files, and stamp with the whole package."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _in_package(py_file):
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        try:
            return package_stamp()
        except OSError:                 # the folder cannot be listed: stamp the file alone
            return super().get_source_stamp()


@functools.lru_cache(maxsize=None)
def install():
    """Put the package's locators first in Numba's list, once. Returns
    whether they are there (False where this Numba lacks the names)."""
    try:
        from numba.core import caching
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
        classes = impl._locator_classes
        bases = (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator, caching.UserWideCacheLocator)
    except (ImportError, AttributeError):
        return False
    classes[:0] = [type("Package" + base.__name__, (_PackageStamp, base), {"__module__": __name__})
                   for base in bases]
    return True
