"""Test programs shared by the core equivalence tests (test_ccore, test_moncore)."""

RECURSION = """
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def walk(tree, depth=0, *, label="root"):
        total = depth
        for child in tree:
            total += walk(child, depth + 1, label=f"{label}.{len(child)}")
        return total

    fib(6)
    walk([[[], []], [[[]]], []])
"""

CLASSES = """
    class Shape:
        count = 0

        def __init__(self, name, sides=0):
            self.name = name
            self.sides = sides
            Shape.count += 1

        @property
        def label(self):
            return f"{self.name}/{self.sides}"

        @classmethod
        def square(cls, size):
            return cls("square", 4)

        @staticmethod
        def describe(shape):
            return shape.label

        def __repr__(self):
            return "Shape()"

        def __len__(self):
            return self.sides

        def __eq__(self, other):
            return isinstance(other, Shape) and self.sides == other.sides

        __hash__ = object.__hash__

    class Circle(Shape):
        def __init__(self, r):
            super().__init__("circle")
            self.r = r

        @property
        def area(self):
            return 3.14159 * self.r**2

    s = Shape.square(2)
    c = Circle(1.5)
    Shape.describe(s)
    c.area
    len(s)
    s == c
    repr(s)
    sorted([s, c, Shape("tri", 3)], key=len)
    Circle.square(1)
"""

THREADS = """
    import threading

    results = [0, 0, 0]

    def square(x):
        return x * x

    def work(n):
        return sum(square(i) for i in range(n))

    def worker(i):
        results[i] = work(i + 2)

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"worker-{i}") for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    work(3)
"""
