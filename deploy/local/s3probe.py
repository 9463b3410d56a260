#!/usr/bin/env python3
"""Minimal S3 client (standard library only, AWS Signature V4, path-style).

Used by `deploy/local/stack check` to prove tenant isolation on the local S3
gateway, and handy for poking at buckets without installing an S3 CLI:

    s3probe.py [--endpoint URL] [--region R] --access AK --secret SK put    BUCKET KEY FILE|-
    s3probe.py ...                                                     get    BUCKET KEY
    s3probe.py ...                                                     head   BUCKET KEY
    s3probe.py ...                                                     delete BUCKET KEY
    s3probe.py ...                                                     list   BUCKET [PREFIX]
    s3probe.py ...                                                     mkbucket BUCKET
    s3probe.py [--endpoint URL] [--region R] batch < LINES

Prints the HTTP status on stderr; the exit code is 0 for 2xx, 3 for 403, 4 for
404 and 1 for anything else, so shell scripts can assert on refusals.

`batch` runs many requests in one process (the interpreter's start-up dominates
a single request): each input line is `ACCESS SECRET OP BUCKET [KEY [FILE]]`,
and each output line is that request's exit code as above, in input order.
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import os
import sys
import urllib.parse


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def request(endpoint, region, access, secret, method, bucket, key="", body=b"", query=None):
    u = urllib.parse.urlsplit(endpoint)
    host = u.netloc
    path = "/" + bucket
    if key:
        path += "/" + urllib.parse.quote(key, safe="/-_.~")
    query = query or {}
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query.items())
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([
        method, path, canonical_query,
        "".join(f"{h}:{headers[h]}\n" for h in sorted(headers)),
        signed, payload_hash,
    ])
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _sign(("AWS4" + secret).encode(), date)
    k = _sign(k, region)
    k = _sign(k, "s3")
    k = _sign(k, "aws4_request")
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(host, timeout=30)
    conn.request(method, path + ("?" + canonical_query if canonical_query else ""), body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


OPS = ["put", "get", "head", "delete", "list", "mkbucket"]


def run_op(endpoint, region, access, secret, op, bucket, key="", file=None):
    """One request; returns (exit code, HTTP status, response body)."""
    body, method, query = b"", "GET", None
    if op == "put":
        src = file or "-"
        body = sys.stdin.buffer.read() if src == "-" else open(src, "rb").read()
        method = "PUT"
    elif op == "head":
        method = "HEAD"
    elif op == "delete":
        method = "DELETE"
    elif op == "mkbucket":
        method = "PUT"
    elif op == "list":
        query = {"list-type": "2"}
        if key:
            query["prefix"] = key
    if op in ("list", "mkbucket"):
        key = ""
    status, data = request(endpoint, region, access, secret, method, bucket, key, body, query)
    code = 0 if 200 <= status < 300 else {403: 3, 404: 4}.get(status, 1)
    return code, status, data


def batch(endpoint, region):
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        # a put needs a file: stdin is where the requests come from
        if len(f) < 4 or f[2] not in OPS or (f[2] == "put" and (len(f) < 6 or f[5] == "-")):
            print(f"bad batch line: {line.strip()}", file=sys.stderr)
            print(1, flush=True)
            continue
        try:
            code, _, _ = run_op(endpoint, region, *f[:6])
        except (OSError, http.client.HTTPException) as e:
            print(f"{f[2]} s3://{f[3]}: {e}", file=sys.stderr)
            code = 1
        print(code, flush=True)
    return 0


def main():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", default=os.environ.get("FHIRLAKE_S3_ENDPOINT", "http://127.0.0.1:17070"))
    common.add_argument("--region", default=os.environ.get("FHIRLAKE_S3_REGION", "us-east-1"))
    pre, rest = common.parse_known_args()
    if rest == ["batch"]:
        return batch(pre.endpoint, pre.region)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    ap.add_argument("--access", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("op", choices=OPS)
    ap.add_argument("bucket")
    ap.add_argument("key", nargs="?", default="")
    ap.add_argument("file", nargs="?")
    a = ap.parse_args()

    code, status, data = run_op(a.endpoint, a.region, a.access, a.secret, a.op, a.bucket, a.key, a.file)
    key = "" if a.op in ("list", "mkbucket") else a.key
    print(f"{a.op} s3://{a.bucket}/{key} -> HTTP {status}", file=sys.stderr)
    if data and (a.op in ("get", "list") or status >= 300):
        sys.stdout.buffer.write(data)
        if status >= 300 or a.op == "list":
            sys.stdout.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
