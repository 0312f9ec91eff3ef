"""A CPU- and allocation-heavy Python workload with deterministic output.

Run it with PYTHONMALLOC=malloc and PYTHONHASHSEED=0 (so every object goes through malloc
and set/dict orders are fixed), with and without LD_PRELOAD=libcpuheap.so: the output must
be identical.
"""
import collections
import hashlib
import json
import random
import re
import sys

rng = random.Random(12345)
out = []


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


# Dicts and strings: a word-frequency table over generated text.
words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
text = " ".join(rng.choice(words) for _ in range(200_000))
freq = collections.Counter(text.split())
out.append(("wordfreq", len(freq), freq.most_common(5), digest(sorted(freq.items()))))

# Many small objects: a list of instances, sorted, grouped, thrown away.
class Point:
    __slots__ = ("x", "y", "tag")

    def __init__(self, x, y, tag):
        self.x, self.y, self.tag = x, y, tag


pts = [Point(rng.random(), rng.random(), rng.choice(words)) for _ in range(150_000)]
pts.sort(key=lambda p: (p.tag, p.x))
groups = collections.defaultdict(list)
for p in pts:
    groups[p.tag[:2]].append(round(p.x * p.y, 6))
out.append(("points", len(groups), digest(sorted((k, round(sum(v), 6)) for k, v in groups.items()))))
del pts, groups

# Growing and shrinking containers (realloc-heavy): lists, bytearrays, strings.
acc = []
ba = bytearray()
for i in range(200_000):
    acc.append(str(i) * (i % 7))
    ba += bytes([i % 251]) * (i % 5)
    if i % 1000 == 999:
        acc = acc[len(acc) // 2:]
out.append(("containers", len(acc), len(ba), hashlib.sha256(ba).hexdigest()[:16]))

# JSON round trips of nested structures.
docs = [{"id": i, "name": rng.choice(words), "tags": rng.sample(words, 5),
         "nested": {"v": [rng.randint(0, 10**9) for _ in range(10)]}} for i in range(20_000)]
s = json.dumps(docs, sort_keys=True)
back = json.loads(s)
out.append(("json", len(s), back == docs, hashlib.sha256(s.encode()).hexdigest()[:16]))

# Big integers: factorial and a Fibonacci number.
f = 1
for i in range(2, 3000):
    f *= i
a, b = 0, 1
for _ in range(20_000):
    a, b = b, a + b
out.append(("bigint", f.bit_length(), a % 10**20, digest(f % (10**50 + 151))))

# Regular expressions and dict-of-sets graph work.
pairs = re.findall(r"\b([a-e]+)\s+([f-j]+)\b", text[:400_000])
graph = collections.defaultdict(set)
for x, y in pairs:
    graph[x].add(y)
    graph[y].add(x)
seen, comps = set(), 0
for node in sorted(graph):
    if node in seen:
        continue
    comps += 1
    stack = [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(graph[n] - seen)
out.append(("graph", len(pairs), len(graph), comps))

for line in out:
    print(line)
print("done", digest(out), file=sys.stdout)
