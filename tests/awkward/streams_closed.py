"""The program closes stdout and drops stderr before it ends."""

import sys


def say(text):
    print(text, flush=True)


say("before closing")
sys.stdout.close()
sys.stderr = None
