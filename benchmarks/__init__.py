"""minicnn against torch on the CPU: ``python -m benchmarks [--quick]``.

``cases.py`` lists what is measured, ``run.py`` times it and writes the
reports into ``results/``, ``memory.py`` measures the peak memory of a
training step in subprocesses.
"""
