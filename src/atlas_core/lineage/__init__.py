"""Lineage across services: ids (``kind:key``), what one service answers about one id
(:class:`LineageView`, the proto ``LineageRecord``) and the client-side walk over all of them."""

from atlas_core.lineage.ids import JOB_KIND, OWNER, LineageId, make, of_parent, parse, recognise
from atlas_core.lineage.render import render
from atlas_core.lineage.view import (
    LineageLink,
    LineageNode,
    LineageView,
    answer,
    from_pb,
    job_node,
    not_found,
    to_pb,
)
from atlas_core.lineage.walk import Edge, LineageGraph, WalkedNode, find_cycles, walk

__all__ = [
    "JOB_KIND",
    "OWNER",
    "Edge",
    "LineageGraph",
    "LineageId",
    "LineageLink",
    "LineageNode",
    "LineageView",
    "WalkedNode",
    "answer",
    "find_cycles",
    "from_pb",
    "job_node",
    "not_found",
    "make",
    "of_parent",
    "parse",
    "recognise",
    "render",
    "to_pb",
    "walk",
]
