"""asyncio tasks whose coroutines interleave (issue 19: which task each
resumption belongs to), plus the awkward cases: a Task subclass whose get_name
must not be called by the tracer, an async generator, and a coroutine driven by
hand outside any event loop."""

import asyncio


class LoudTask(asyncio.Task):
    def get_name(self):
        print("get_name called")  # only the program may call it
        return "loud"


async def fetch(i):
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return i


async def worker(n):
    total = 0
    for i in range(n):
        total += await fetch(i)
    return total


async def numbers():
    for i in range(2):
        await asyncio.sleep(0)
        yield i


async def loud():
    await asyncio.sleep(0)
    return "done"


async def main():
    a = asyncio.create_task(worker(2), name="worker-a")
    b = asyncio.create_task(worker(2), name="worker-b")
    loop = asyncio.get_running_loop()
    quiet = LoudTask(loud(), loop=loop, name="custom")
    print(await a, await b, [x async for x in numbers()], await quiet)


async def by_hand():
    await Step()
    return "by hand"


class Step:
    def __await__(self):
        yield


asyncio.run(main())
coroutine = by_hand()
coroutine.send(None)
try:
    coroutine.send(None)
except StopIteration as stop:
    print(stop.value)
