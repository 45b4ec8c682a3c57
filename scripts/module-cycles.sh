#!/bin/bash
# Top-level module dependency edges from `crate::` paths (use lines and inline paths),
# ignoring doc comments; then reports every pair of modules that depend on each other
# and any longer cycle.
cd "${1:-$(dirname "$0")/../eden-consistency/src}"
for f in $(find . -name '*.rs'); do
  top=$(echo "$f" | sed -E 's#^\./##; s#/.*##; s#\.rs$##')
  grep -v '^\s*//' "$f" | grep -oE 'crate::[a-z_]+' | sed 's/crate:://' | sort -u | while read dep; do
    [ "$dep" != "$top" ] && echo "$top $dep"
  done
done | sort -u > /tmp/edges.txt
python3 - <<'PY'
import collections
edges=[l.split() for l in open('/tmp/edges.txt')]
g=collections.defaultdict(set)
for a,b in edges: g[a].add(b)
print("edges:", len(edges))
pairs=[(a,b) for a,b in edges if a<b and a in g[b]]
print("mutual pairs:", pairs or "none")
# Tarjan SCCs
idx={};low={};st=[];on=set();sccs=[];c=[0]
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in g[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: sccs.append(comp)
for v in list(g): 
    if v not in idx: sc(v)
print("cycles (strongly connected groups):", sccs or "none")
PY
