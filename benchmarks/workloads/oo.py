"""Workload: object-oriented business logic, many small in-scope calls.

Dataclasses, methods, properties, inheritance with ``super().__init__``, string
formatting and joining, dict and list work. ``python oo.py [ORDERS]`` (default
6000) simulates that many orders and prints a checksum line.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field


class Rng:
    """A tiny deterministic linear congruential generator."""

    def __init__(self, seed: int) -> None:
        self.state = seed

    def next(self) -> int:
        """The next 31-bit pseudo-random integer."""
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return self.state

    def below(self, n: int) -> int:
        """A pseudo-random integer in [0, n)."""
        return self.next() % n


class Shape:
    """Base class of the packaging shapes."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def area(self) -> float:
        """Surface of the shape."""
        raise NotImplementedError

    def describe(self) -> str:
        """One-line description."""
        return f"{self.name}:{self.area:.1f}"


class Rect(Shape):
    """A rectangle."""

    def __init__(self, width: float, height: float, name: str = "rect") -> None:
        super().__init__(name)
        self.width = width
        self.height = height

    @property
    def area(self) -> float:
        """Width times height."""
        return self.width * self.height


class Square(Rect):
    """A square, a rectangle with equal sides."""

    def __init__(self, side: float) -> None:
        super().__init__(side, side, "square")


class Circle(Shape):
    """A circle."""

    def __init__(self, radius: float) -> None:
        super().__init__("circle")
        self.radius = radius

    @property
    def area(self) -> float:
        """Pi r squared."""
        return math.pi * self.radius * self.radius


@dataclass
class Item:
    """One order line."""

    sku: str
    price_cents: int
    quantity: int
    box: Shape

    @property
    def total_cents(self) -> int:
        """Price times quantity."""
        return self.price_cents * self.quantity

    def label(self) -> str:
        """Printable line."""
        price = format_cents(self.price_cents)
        return f"{self.sku} x{self.quantity} @ {price} [{self.box.describe()}]"


@dataclass
class Order:
    """A customer's order."""

    number: int
    customer: str
    items: list[Item] = field(default_factory=list)

    def add(self, item: Item) -> None:
        """Append a line."""
        self.items.append(item)

    @property
    def total_cents(self) -> int:
        """Sum of the line totals."""
        return sum(item.total_cents for item in self.items)

    def render(self) -> str:
        """The order as text."""
        lines = [f"order {self.number} for {self.customer}"]
        lines.extend(item.label() for item in self.items)
        lines.append(f"total {format_cents(self.total_cents)}")
        return "\n".join(lines)


class Ledger:
    """Orders per customer with running totals."""

    def __init__(self) -> None:
        self.orders: dict[str, list[Order]] = {}
        self.totals: dict[str, int] = {}

    def record(self, order: Order) -> None:
        """Book one order."""
        self.orders.setdefault(order.customer, []).append(order)
        self.totals[order.customer] = self.totals.get(order.customer, 0) + order.total_cents

    def top(self, k: int) -> list[tuple[str, int]]:
        """The k customers with the largest totals."""
        return sorted(self.totals.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def format_cents(cents: int) -> str:
    """Cents as a dollar string."""
    return f"${cents // 100}.{cents % 100:02d}"


def make_box(rng: Rng) -> Shape:
    """A pseudo-random packaging shape."""
    kind = rng.below(3)
    if kind == 0:
        return Rect(1 + rng.below(20), 1 + rng.below(20))
    if kind == 1:
        return Square(1 + rng.below(15))
    return Circle(1 + rng.below(10))


def make_order(number: int, rng: Rng, customers: list[str]) -> Order:
    """A pseudo-random order of 1 to 6 lines."""
    order = Order(number, customers[rng.below(len(customers))])
    for _ in range(1 + rng.below(6)):
        sku = f"SKU-{rng.below(1000):04d}"
        order.add(Item(sku, 50 + rng.below(10000), 1 + rng.below(5), make_box(rng)))
    return order


def main(argv: list[str]) -> None:
    """Simulate ORDERS orders and print a checksum."""
    count = int(argv[1]) if len(argv) > 1 else 6000
    rng = Rng(42)
    customers = [f"customer-{i:03d}" for i in range(200)]
    ledger = Ledger()
    text_size = 0
    for number in range(count):
        order = make_order(number, rng, customers)
        ledger.record(order)
        text_size += len(order.render())
    best = ", ".join(f"{name}={format_cents(total)}" for name, total in ledger.top(3))
    print(f"orders={count} text={text_size} top: {best}")


if __name__ == "__main__":
    main(sys.argv)
