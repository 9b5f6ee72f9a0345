"""A fork Pool(3) where one worker gets the only task: all three are traced."""

import multiprocessing


def work(x):
    return x * x


if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(3) as pool:
        print(pool.apply(work, (7,)))
