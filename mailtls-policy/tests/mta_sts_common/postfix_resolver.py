"""Runs postfix-mta-sts-resolver's own STSResolver.resolve() against the
test's loopback policy host. DNS TXT answers come from argv (the same
records the Rust side serves), the HTTPS connection goes to 127.0.0.1:PORT
with the test CA; everything else is the unmodified resolver.

usage: postfix_resolver.py PORT CA_PEM JSON{domain: txt or [txt, ...]}
prints JSON {domain: [result, mode, [mx...]]}
"""
import asyncio
import json
import socket
import ssl
import sys

import aiohttp
import aiohttp.abc
from postfix_mta_sts_resolver import resolver as res

PORT = int(sys.argv[1])
CTX = ssl.create_default_context(cafile=sys.argv[2])
TXT = json.loads(sys.argv[3])


class Loopback(aiohttp.abc.AbstractResolver):
    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": PORT,
                 "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


_Orig = aiohttp.ClientSession


class Session(_Orig):
    def __init__(self, *args, **kwargs):
        kwargs.pop("loop", None)
        kwargs["connector"] = aiohttp.TCPConnector(resolver=Loopback(), ssl=CTX)
        super().__init__(*args, **kwargs)


res.aiohttp.ClientSession = Session


class Rec:
    def __init__(self, text):
        self.text = text


async def main():
    r = res.STSResolver(loop=asyncio.get_running_loop(), timeout=5)

    async def query(name, rtype):
        domain = name[len("_mta-sts."):]
        texts = TXT[domain]
        return [Rec(t) for t in (texts if isinstance(texts, list) else [texts])]

    r._resolver.query = query
    out = {}
    for domain in TXT:
        status, pol = await r.resolve(domain)
        if pol is None:
            out[domain] = [status.name, None, []]
        else:
            out[domain] = [status.name, pol[1].get("mode"), pol[1].get("mx", [])]
    print(json.dumps(out))


asyncio.run(main())
