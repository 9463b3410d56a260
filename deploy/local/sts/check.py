#!/usr/bin/env python3
"""`deploy/local/stack check` of the local STS: roles, sessions and their limits.

    check.py ENDPOINT REGION ACCOUNT TENANT OTHER_TENANT   (base user's key in $FHIRLAKE_STS_*)

Prints one `ok`/`FAIL` line per check; exits 1 if any failed.
"""
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, region, account, tenant, other = sys.argv[1:]
cfg = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})
fails = 0


def client(service, **creds):
    return boto3.client(service, endpoint_url=endpoint, region_name=region, config=cfg, **creds)


def expect(what, want_ok, fn):
    global fails
    try:
        fn()
        got = "allowed"
    except ClientError as e:
        got = "refused (" + e.response["Error"]["Code"] + ")"
    if (got == "allowed") == want_ok:
        print(f"  ok    {what}: {got}")
    else:
        print(f"  FAIL  {what}: {got}")
        fails += 1


base = dict(aws_access_key_id=os.environ["FHIRLAKE_STS_ACCESS_KEY"],
            aws_secret_access_key=os.environ["FHIRLAKE_STS_SECRET_KEY"])
sts = client("sts", **base)
role = f"arn:aws:iam::{account}:role/fhirlake-{tenant}"
session = {}


def assume():
    c = sts.assume_role(RoleArn=role, RoleSessionName="stack-check")["Credentials"]
    session.update(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                   aws_session_token=c["SessionToken"])


expect(f"base user assumes {role}", True, assume)
if session:
    s3 = client("s3", **session)
    key = "_stack-check/sts.txt"
    expect(f"session: PUT s3://fhirlake-{tenant}/{key}", True,
           lambda: s3.put_object(Bucket=f"fhirlake-{tenant}", Key=key, Body=b"fhirlake stack check\n"))
    expect(f"session: GET s3://fhirlake-{tenant}/{key}", True,
           lambda: s3.get_object(Bucket=f"fhirlake-{tenant}", Key=key)["Body"].read())
    expect(f"session: LIST s3://fhirlake-{other}", False, lambda: s3.list_objects_v2(Bucket=f"fhirlake-{other}"))
    no_token = {k: v for k, v in session.items() if k != "aws_session_token"}
    expect("session key without its token", False,
           lambda: client("s3", **no_token).list_objects_v2(Bucket=f"fhirlake-{tenant}"))
    s3.delete_object(Bucket=f"fhirlake-{tenant}", Key=key)
expect(f"base user: LIST s3://fhirlake-{tenant} (it may only assume roles)", False,
       lambda: client("s3", **base).list_objects_v2(Bucket=f"fhirlake-{tenant}"))
expect(f"base user assumes arn:aws:iam::{account}:role/fhirlake-untrusted", False,
       lambda: sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/fhirlake-untrusted", RoleSessionName="stack-check"))
sys.exit(1 if fails else 0)
