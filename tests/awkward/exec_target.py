"""Started by exec_python.py through os.execv."""

import sys


def after_exec(args):
    print("after exec", args)


if __name__ == "__main__":
    after_exec(sys.argv[1:])
