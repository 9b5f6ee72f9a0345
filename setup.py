"""Optional C accelerators; a failed compile falls back to pure Python."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("otel_tracer.trace._speedups", ["otel_tracer/trace/_speedups.c"], optional=True),
        Extension(
            "otel_tracer.record._ctracer",
            ["otel_tracer/record/_ctracer.c"],
            depends=["otel_tracer/record/_cmoncore.h"],  # included by _ctracer.c
            optional=True,
        ),
        Extension(
            "otel_tracer.run._sigretry",
            ["otel_tracer/run/_sigretry.c"],
            libraries=["rt"],
            optional=True,
        ),
    ]
)
