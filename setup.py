"""Build the Cython kernels in pyx/ with OpenMP when the compiler supports it.

The OpenMP decision is made by compiling and running a tiny OpenMP program with the
configured compiler.  If that fails (or CELESTE_NO_OPENMP=1), the kernels are built as
serial code with a warning; the build itself never fails for lack of OpenMP.
"""

import os
import sys
import tempfile
import textwrap
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

PYX_ROOT = Path("pyx")
OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        if (n != omp_get_max_threads()) return 1;
        printf("%d\\n", n);
        return 0;
    }
    """
)


def _openmp_flags(compiler_type: str) -> tuple[list[str], list[str]]:
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


class BuildExtWithOpenMP(build_ext):
    """build_ext that probes for OpenMP and adds its flags to every extension."""

    def _probe_openmp(self) -> tuple[list[str], list[str]] | None:
        if os.environ.get("CELESTE_NO_OPENMP", "").strip() not in ("", "0"):
            print("celeste: CELESTE_NO_OPENMP is set, building serial kernels")
            return None
        cflags, ldflags = _openmp_flags(self.compiler.compiler_type)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "probe_openmp.c"
            src.write_text(OPENMP_PROBE)
            try:
                objects = self.compiler.compile([str(src)], output_dir=tmp, extra_postargs=cflags)
                exe = str(Path(tmp) / "probe_openmp")
                self.compiler.link_executable(objects, exe, extra_postargs=ldflags)
                if os.system(f'"{exe}" > "{os.devnull}"') != 0:
                    raise RuntimeError("OpenMP probe program failed to run")
            except Exception as exc:  # any compiler/linker failure means "no OpenMP"
                print(
                    "*" * 72
                    + f"\nceleste: WARNING: OpenMP not available ({exc}).\n"
                    + "Kernels are built serially; --threads will have no effect.\n"
                    + "*" * 72
                )
                return None
        return cflags, ldflags

    def build_extensions(self):
        flags = self._probe_openmp()
        for ext in self.extensions:
            ext.define_macros.append(("CELESTE_OPENMP", "1" if flags else "0"))
            if flags:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
        super().build_extensions()


def _extensions() -> list[Extension]:
    # -fno-math-errno: libm calls need not set errno, so they can be inlined and vectorised
    base_flags = ["-O3", "-fno-math-errno"] if sys.platform != "win32" else ["/O2"]
    exts = []
    for pyx in sorted(PYX_ROOT.rglob("*.pyx")):
        module = ".".join(pyx.relative_to(PYX_ROOT).with_suffix("").parts)
        exts.append(
            Extension(
                module,
                [str(pyx)],
                extra_compile_args=list(base_flags),
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return exts


debug = os.environ.get("CELESTE_CYTHON_DEBUG", "").strip() not in ("", "0")
directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "initializedcheck": debug,
    "nonecheck": False,
    "cdivision": True,
    "freethreading_compatible": True,
}

setup(
    # The top-level data/ folder (model constants as tables) is installed as celestecli.data.
    packages=find_packages(include=["celestecli", "celestecli.*"]) + ["celestecli.data"],
    package_dir={"celestecli.data": "data"},
    ext_modules=cythonize(
        _extensions(),
        include_path=[str(PYX_ROOT)],
        compiler_directives=directives,
        # The OpenMP choice is a C macro, so regenerate C whenever the choice may change.
        force=True,
    ),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
