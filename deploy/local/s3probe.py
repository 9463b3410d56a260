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

Prints the HTTP status on stderr; the exit code is 0 for 2xx, 3 for 403, 4 for
404 and 1 for anything else, so shell scripts can assert on refusals.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default=os.environ.get("FHIRLAKE_S3_ENDPOINT", "http://127.0.0.1:17070"))
    ap.add_argument("--region", default=os.environ.get("FHIRLAKE_S3_REGION", "us-east-1"))
    ap.add_argument("--access", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("op", choices=["put", "get", "head", "delete", "list", "mkbucket"])
    ap.add_argument("bucket")
    ap.add_argument("key", nargs="?", default="")
    ap.add_argument("file", nargs="?")
    a = ap.parse_args()

    body, method, query = b"", "GET", None
    if a.op == "put":
        src = a.file or "-"
        body = sys.stdin.buffer.read() if src == "-" else open(src, "rb").read()
        method = "PUT"
    elif a.op == "head":
        method = "HEAD"
    elif a.op == "delete":
        method = "DELETE"
    elif a.op == "mkbucket":
        method = "PUT"
    elif a.op == "list":
        query = {"list-type": "2"}
        if a.key:
            query["prefix"] = a.key
    key = "" if a.op in ("list", "mkbucket") else a.key
    status, data = request(a.endpoint, a.region, a.access, a.secret, method, a.bucket, key, body, query)
    print(f"{a.op} s3://{a.bucket}/{key} -> HTTP {status}", file=sys.stderr)
    if data and (a.op in ("get", "list") or status >= 300):
        sys.stdout.buffer.write(data)
        if status >= 300 or a.op == "list":
            sys.stdout.write("\n")
    if 200 <= status < 300:
        return 0
    return {403: 3, 404: 4}.get(status, 1)


if __name__ == "__main__":
    sys.exit(main())
