"""Build hook for the one optional C extension (pre-bound kernel launches).

Everything else is declared in pyproject.toml. The extension is optional: without a C compiler
the package still installs and launches go through the Python bindings (slower per launch).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "reef_rocm.gpu._fastlaunch",
            sources=["reef_rocm/gpu/_fastlaunch.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
