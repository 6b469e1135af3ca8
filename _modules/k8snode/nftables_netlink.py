"""
The nf_tables tables of this network namespace, read as ``nft list tables`` reads them:
one ``NFT_MSG_GETTABLE`` dump over a netfilter netlink socket (include/uapi/linux/netlink.h,
netfilter/nfnetlink.h, netfilter/nf_tables.h). No process, no write: a dump only reads.
The caller asks only while nf_tables is loaded: nfnetlink would load the module for a
request otherwise (``request_module("nfnetlink-subsys-10")``).
"""

import os
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE = 1
NFTA_TABLE_NAME = 1
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big-endian, 0 here)
_ATTR = struct.Struct("=HH")  # nlattr: len, type
#: nfgen_family values (include/uapi/linux/netfilter.h NFPROTO_*) as nft names them.
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}


def request(seq=1):
    """The dump request: every table of every family."""
    body = _NFGEN.pack(socket.AF_UNSPEC, 0, 0)
    kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
    return _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _align(length):
    return (length + 3) & ~3


def parse(data):
    """``(tables, done)`` of one buffer of answers: ``["ip filter", ...]`` and whether the
    dump ended (NLMSG_DONE). An NLMSG_ERROR raises OSError with its errno."""
    tables, offset, done = [], 0, False
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        body = data[offset + _HEADER.size : offset + length]
        offset += _align(length)
        if kind == NLMSG_DONE:
            done = True
            break
        if kind == NLMSG_ERROR:
            error = -struct.unpack_from("=i", body)[0]
            if error:
                raise OSError(error, os.strerror(error))
            continue
        if kind != (NFNL_SUBSYS_NFTABLES << 8) | 0:  # NFT_MSG_NEWTABLE: one table
            continue
        family = FAMILIES.get(body[0], str(body[0]))
        position = _NFGEN.size
        while position + _ATTR.size <= len(body):
            attr_length, attr_type = _ATTR.unpack_from(body, position)
            if attr_length < _ATTR.size:
                break
            if attr_type & 0x3FFF == NFTA_TABLE_NAME:
                name = body[position + _ATTR.size : position + attr_length].split(b"\0", 1)[0]
                tables.append(f"{family} {name.decode('utf-8', 'replace')}")
            position += _align(attr_length)
    return tables, done


def list_tables(timeout=2.0):
    """The tables of this network namespace (needs CAP_NET_ADMIN: OSError otherwise)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        sock.send(request())
        tables = []
        while True:
            found, done = parse(sock.recv(65536))
            tables += found
            if done:
                return sorted(tables)
