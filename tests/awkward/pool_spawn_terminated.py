"""A spawn Pool(3) terminated while its workers are still starting."""

import multiprocessing


def work(x):
    return x * x


if __name__ == "__main__":
    pool = multiprocessing.get_context("spawn").Pool(3)
    pool.terminate()
    pool.join()
    print("terminated")
