"""__main__ as Python makes it for a script."""

import sys


def describe():
    main = sys.modules["__main__"]
    print(type(__builtins__).__name__, __builtins__ is __import__("builtins"))
    print("__cached__" in globals(), repr(globals().get("__cached__")))
    print(__name__, repr(__package__), __spec__, __file__.endswith("main_module.py"))
    print(type(__loader__).__name__, main is sys.modules[__name__])
    print(sorted(name for name in globals() if name.startswith("__")))
    print(repr(__doc__[:10]))


describe()
