# SPDX-License-Identifier: MIT
# The pure-Python workload of scripts/bench-programs.sh: deterministic work
# on dicts, lists, strings, tuples and small objects, the allocation mix of
# an ordinary Python program (most of it pymalloc, larger containers and
# strings from malloc). Prints a checksum.
import sys


class Item:
    __slots__ = ("key", "name", "tags")

    def __init__(self, key, name, tags):
        self.key = key
        self.name = name
        self.tags = tags


def rounds(n):
    seed = 12345
    total = 0
    for r in range(n):
        table = {}
        items = []
        for i in range(20000):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            name = "item-%d-%x" % (i, seed)
            tags = [name[j:j + 3] for j in range(0, len(name), 3)]
            it = Item(seed % 5000, name, tags)
            items.append(it)
            table.setdefault(it.key, []).append(it)
        groups = sorted(table.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        text = "\n".join(",".join(x.name for x in g) for _, g in groups[:2000])
        words = text.replace(",", " ").split()
        counts = {}
        for w in words:
            counts[w[:6]] = counts.get(w[:6], 0) + 1
        big = [bytes(256 + (k % 7) * 512) for k in range(2000)]
        total += len(text) + len(counts) + sum(len(t) for x in items for t in x.tags) + len(big)
    return total


print(rounds(int(sys.argv[1]) if len(sys.argv) > 1 else 6))
