"""sys.exit with a number too large for an exit status."""

import sys


def main():
    print("exiting")
    sys.exit(2**100)


main()
