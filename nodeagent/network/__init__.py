"""Pod networking: netlink primitives, the keelson0 bridge with a veth per pod, and IPAM."""
