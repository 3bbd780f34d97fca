"""Build hook: compiles every Cython module under the serving packages.

A missing C compiler must fail the build loudly; there is no pure-Python fallback
because the scorer's speed is part of its contract.
"""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

PACKAGES = ("features", "models", "streaming")

extensions = [
    Extension(
        ".".join(pyx.with_suffix("").parts),
        [str(pyx)],
        # C headers beside the module (included from its C blocks, unseen by Cython):
        # a change to one recompiles the module.
        depends=[str(h) for h in sorted(pyx.parent.glob("*.h"))],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for package in PACKAGES
    for pyx in sorted(Path(package).rglob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
