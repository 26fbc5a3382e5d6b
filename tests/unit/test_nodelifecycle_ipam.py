"""Node IPAM bookkeeping: which /24 comes next, what counts as taken."""

from __future__ import annotations

import ipaddress

import pytest

from controllers.nodeipam import CidrAllocator, CidrExhaustedError, node_pod_cidrs


def test_blocks_are_handed_out_lowest_first_skipping_taken_ones() -> None:
    allocator = CidrAllocator("10.244.0.0/16")
    used = allocator.blocks_in_use(["10.244.0.0/24", "10.244.1.0/24", "10.244.3.0/24"])
    assert str(allocator.first_free(used)) == "10.244.2.0/24"


def test_what_counts_as_taken() -> None:
    allocator = CidrAllocator("10.244.0.0/16")
    used = allocator.blocks_in_use(
        ["192.168.0.0/24", "fd00::/64", "not a cidr", "10.244.7.128/25", "10.244.8.0/23"]
    )
    assert sorted(map(str, used)) == ["10.244.7.0/24", "10.244.8.0/24", "10.244.9.0/24"]


def test_exhaustion_is_an_error_naming_the_range() -> None:
    allocator = CidrAllocator("10.244.0.0/23")
    used = {ipaddress.ip_network("10.244.0.0/24"), ipaddress.ip_network("10.244.1.0/24")}
    with pytest.raises(CidrExhaustedError, match=r"10\.244\.0\.0/23"):
        allocator.first_free(used)


def test_a_mask_wider_than_the_cluster_is_refused() -> None:
    with pytest.raises(ValueError, match="larger than the cluster CIDR"):
        CidrAllocator("10.244.0.0/24", node_mask_size=16)


def test_node_pod_cidrs_reads_both_fields() -> None:
    assert node_pod_cidrs({"spec": {"podCIDR": "10.244.1.0/24"}}) == ["10.244.1.0/24"]
    assert node_pod_cidrs(
        {"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00::/64"]}}
    ) == ["10.244.1.0/24", "fd00::/64"]
    assert node_pod_cidrs({}) == []
