"""Optional C accelerators; a failed compile falls back to pure Python."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("otel_tracer._speedups", ["otel_tracer/_speedups.c"], optional=True),
        Extension("otel_tracer._ctracer", ["otel_tracer/_ctracer.c"], optional=True),
        Extension(
            "otel_tracer._sigretry",
            ["otel_tracer/_sigretry.c"],
            libraries=["rt"],
            optional=True,
        ),
    ]
)
