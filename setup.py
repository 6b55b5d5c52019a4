from setuptools import find_packages, setup

setup(
    name="minicnn",
    version="0.1.0",
    description="A convolutional-network engine written from scratch on NumPy, Numba and CuPy",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The kernels live in the top-level folder kernels/ but install as
    # minicnn.kernels: a top-level import package named "kernels" would
    # collide with an unrelated package of that name.
    packages=find_packages(include=["minicnn", "minicnn.*"])
    + ["minicnn.kernels" + name[len("kernels"):] for name in find_packages(include=["kernels", "kernels.*"])],
    package_dir={"minicnn.kernels": "kernels"},
    package_data={"minicnn.kernels": ["cuda/*.cu", "cuda/*.h"], "minicnn": ["data/*"], "minicnn.models": ["data/*"]},
    install_requires=["numpy>=1.24", "numba>=0.59", "threadpoolctl", "tqdm", "safetensors", "scikit-learn", "pillow"],
    extras_require={
        "test": [
            "pytest",
            "pytest-xdist",
            "hypothesis",
            "torch==2.14.1",
            "torchvision==0.29.1",
            "scikit-learn",
            "matplotlib",
            "nbclient",  # tests/test_examples.py executes the notebooks in examples/
            "nbformat",
            "ipykernel",
            "graphviz",
            "pydot",  # parses the DOT text of mc.viz.graph in its tests
            "cuda-bindings",  # NVRTC, to compile the CUDA kernels in the tests (no GPU needed)
            "mpi4py",  # tests/distributed run two ranks under mpiexec
            "mpich",  # an MPI library and its mpiexec, as a wheel
            "pycocotools",  # COCOeval, the reference for mc.metrics.mean_average_precision
        ],
        "cuda": ["cupy-cuda13x"],
        "viz": ["matplotlib", "graphviz"],
        "distributed": ["mpi4py", "mpich"],  # mc.distributed: data-parallel training on MPI
    },
    entry_points={"console_scripts": ["minicnn=minicnn.__main__:main"]},
)
