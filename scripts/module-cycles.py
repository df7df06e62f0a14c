#!/usr/bin/env python3
"""Finds import cycles between the modules of one crate.

Usage: scripts/module-cycles.py [CRATE_SRC_DIR] [--top] [--edges]

Each source file is a module (`foo.rs` and `foo/mod.rs` are `crate::foo`,
`foo/bar.rs` is `crate::foo::bar`). A module depends on another when its
code names an item of it: a `use` of a `crate::`, `super::`, `self::` or
child-module path, or such a path written inline. Paths are resolved
through `pub use` re-exports to the module that defines the item, so
`crate::Emitter` counts as a dependency on `emit`, not on the crate root; a
`pub use` line is a re-export, not a dependency, unless the module's own
code also uses the name it binds; a glob import (`use super::*`) is a
dependency on the module it reads. Comments, string literals,
`#[cfg(doc)]` imports (for doc links only) and `#[cfg(test)]` modules
(inline, or in a file of their own with everything below it) are ignored:
tests may reach anywhere.

A module reading an item of an enclosing module (`use super::Item` in
`graph/validate.rs`, for `graph/mod.rs`'s types) is not counted: a child is
part of its parent's implementation, and the parent calling into it while
it reads the parent's types is how Rust modules are split up, not a loop.
The parent's use of the child does count, so a loop that leaves the parent
through one child and comes back through another module still shows, and
`--top` checks the modules as wholes.

It prints every strongly connected component of more than one module
(each is one or more cycles) with the edges inside it and where they come
from, and exits 1 if there is any. `--top` also collapses modules to their
top-level module (`epoch::shard` -> `epoch`) and checks that graph;
`--edges` prints the whole graph.
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
TEST_MOD_DECL = re.compile(
    r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;"
)
USE = re.compile(r"(\bpub(\([^)]*\))?\s+)?\buse\s+([^;]+);")


def strip_code(text):
    """Blanks out comments and string/char literals, keeping line breaks."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not re.match(
            r"[A-Za-z0-9_]", text[i - 1] if i else " "
        ):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i : i + 4] + "   "):
            # A char literal ('a', '\n'); lifetimes ('a) are left alone.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_doc_imports(text):
    """Blanks out `#[cfg(doc)] use ...;` items: imports for doc links only,
    which compile to nothing and make no dependency."""
    pattern = re.compile(r"#\[cfg\(doc\)\]\s*(pub(\([^)]*\))?\s+)?use\s[^;]*;")
    return pattern.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def drop_test_modules(text):
    """Blanks out `#[cfg(test)] mod name { ... }` blocks, keeping lines."""
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{")
    while True:
        m = pattern.search(text)
        if not m:
            return text
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        text = text[: m.start()] + "\n" * text.count("\n", m.start(), j) + text[j:]


def expand_use_tree(tree):
    """`a::{b, c::{self, d as e}}` -> [([a, b], b), ([a, c], c),
    ([a, c, d], e)]: each path with the name it binds."""
    tree = re.sub(r"\s+", " ", tree).strip()
    paths = []

    def walk(prefix, s):
        s = s.strip()
        if not s:
            return
        if "{" in s:
            head, body = s.split("{", 1)
            body = body[: body.rfind("}")]
            head = [p for p in head.strip().rstrip(":").split("::") if p.strip()]
            for part in split_top(body):
                walk(prefix + [h.strip() for h in head], part)
        else:
            alias = re.search(r"\s+as\s+(" + IDENT + ")$", s)
            s = s[: alias.start()] if alias else s
            segs = [p.strip() for p in s.split("::") if p.strip()]
            path = prefix if segs == ["self"] else prefix + segs
            if path:
                paths.append((path, alias.group(1) if alias else path[-1]))

    walk([], tree)
    return paths


def split_top(body):
    parts, depth, cur = [], 0, []
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def module_of(src, path):
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel in (["lib"], ["main"]):
        return ()
    if rel[-1] == "mod":
        rel = rel[:-1]
    return tuple(rel)


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = {}
        for root, _, names in os.walk(src):
            for name in names:
                if name.endswith(".rs"):
                    path = os.path.join(root, name)
                    self.files[module_of(src, path)] = path
        self.code = {}
        for module, path in self.files.items():
            with open(path, encoding="utf-8") as f:
                self.code[module] = drop_doc_imports(drop_test_modules(strip_code(f.read())))
        # Test modules in files of their own (`#[cfg(test)] mod tests;`) go
        # with everything below them.
        tests = {
            module + (m.group(1),)
            for module, code in self.code.items()
            for m in TEST_MOD_DECL.finditer(code)
        }
        for module in list(self.files):
            if any(module[: len(test)] == test for test in tests):
                del self.files[module], self.code[module]
        self.modules = set(self.files)
        self.uses = {}  # module -> [(is_reexport, path segments, bound name, line)]
        self.reexports = defaultdict(dict)  # module -> name -> absolute path
        for module in self.files:
            code = self.code[module]
            self.uses[module] = []
            for m in USE.finditer(code):
                line = code.count("\n", 0, m.start()) + 1
                for segs, bound in expand_use_tree(m.group(3)):
                    self.uses[module].append((m.group(1) is not None, segs, bound, line))
        for module, uses in self.uses.items():
            for is_reexport, segs, bound, _ in uses:
                if is_reexport and segs[-1] != "*":
                    absolute = self.absolute(module, segs)
                    if absolute is not None:
                        self.reexports[module][bound] = absolute

    def absolute(self, module, segs):
        """The absolute path of `segs` written in `module`, or None if it
        leaves the crate."""
        segs = list(segs)
        if not segs:
            return None
        if segs[0] == "crate":
            return tuple(segs[1:])
        base = list(module)
        if segs[0] == "self":
            segs = segs[1:]
        elif segs[0] == "super":
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
        elif tuple(base + [segs[0]]) not in self.modules:
            return None  # another crate, or a name declared in this file
        return tuple(base + segs)

    def defining_module(self, absolute, seen=()):
        """The module that defines the item at `absolute`."""
        depth = len(absolute)
        while depth and absolute[:depth] not in self.modules:
            depth -= 1
        module, rest = absolute[:depth], absolute[depth:]
        if rest and rest[0] in self.reexports[module] and absolute not in seen:
            target = self.reexports[module][rest[0]] + rest[1:]
            return self.defining_module(target, seen + (absolute,))
        return module

    def edges(self):
        """(source, target) -> [line, ...] for every dependency."""
        found = defaultdict(list)
        for module in self.modules:
            code = self.code[module]
            # The module's code without its `use` lines: where a re-exported
            # name shows whether the module itself uses it.
            body = USE.sub(lambda m: "\n" * m.group(0).count("\n"), code)
            for is_reexport, segs, bound, line in self.uses[module]:
                if is_reexport and (
                    segs[-1] == "*" or not re.search(r"\b" + bound + r"\b", body)
                ):
                    continue  # A facade, not a dependency of this module.
                absolute = self.absolute(module, segs)
                if absolute is not None:
                    found[(module, self.defining_module(absolute))].append(line)
            for m in re.finditer(r"(?<![A-Za-z0-9_:])(" + IDENT + r")((?:::" + IDENT + r")+)", code):
                line_start = code.rfind("\n", 0, m.start()) + 1
                if re.match(r"\s*(pub(\([^)]*\))?\s+)?use\b", code[line_start:]):
                    continue
                segs = [m.group(1)] + m.group(2).split("::")[1:]
                if segs[0] not in ("crate", "super", "self") and (
                    tuple(module) + (segs[0],) not in self.modules
                ):
                    continue
                absolute = self.absolute(module, segs)
                if absolute is not None:
                    line = code.count("\n", 0, m.start()) + 1
                    found[(module, self.defining_module(absolute))].append(line)
        return {
            (a, b): lines
            for (a, b), lines in found.items()
            if a != b and a[: len(b)] != b
        }


def name(module):
    return "crate::" + "::".join(module) if module else "crate"


def components(nodes, edges):
    """Tarjan's strongly connected components."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            result.append(sorted(scc))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [c for c in result if len(c) > 1]


def report(title, nodes, edges, where):
    cycles = components(nodes, edges)
    print(f"{title}: {len(nodes)} modules, {len(edges)} edges, "
          f"{len(cycles)} cycle(s)")
    for scc in cycles:
        members = set(scc)
        print("  cycle among " + ", ".join(name(m) for m in scc) + ":")
        for (a, b) in sorted(edges):
            if a in members and b in members:
                print(f"    {name(a)} -> {name(b)}  ({where(a, b)})")
    return len(cycles)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "runtime", "src")
    crate = Crate(os.path.normpath(src))
    edges = crate.edges()

    def where(a, b):
        lines = ",".join(str(n) for n in sorted(set(edges[(a, b)])))
        return f"{os.path.relpath(crate.files[a], crate.src)}:{lines}"

    if "--edges" in sys.argv:
        for (a, b) in sorted(edges):
            print(f"{name(a)} -> {name(b)}  ({where(a, b)})")
    total = report("modules", crate.modules, set(edges), where)
    if "--top" in sys.argv:
        top = defaultdict(list)
        for (a, b) in edges:
            if a[:1] != b[:1]:
                top[(a[:1], b[:1])].append(where(a, b))
        tops = {m[:1] for m in crate.modules}
        total += report("top-level modules", tops, set(top),
                        lambda a, b: "; ".join(sorted(top[(a, b)])))
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
