#!/usr/bin/env python3
"""Provision the local STS (moto's server) for role tests, then enforce IAM.

    provision.py ENDPOINT REGION ACCOUNT OUT_ENV TENANT...

moto keeps everything in memory, so this runs after every start of the service:

- an IAM user `fhirlake-base`, the identity fhirlake runs as (as a pod's own role
  would be), allowed nothing but sts:AssumeRole on the tenants' roles;
- per tenant, a bucket `fhirlake-<tenant>` and a role `fhirlake-<tenant>` that
  trusts the base user and is allowed s3:* on that bucket only;
- a role `fhirlake-untrusted` whose trust policy names another principal, so
  assuming it is refused;

then turns on moto's IAM authentication (every request signed with a known key,
a session token checked, policies evaluated) and writes the base user's key to
OUT_ENV (mode 0600) as `export NAME=value` lines. Run with auth already on and a
working key in OUT_ENV, it does nothing.
"""
import json
import os
import sys
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, region, account, out_env, *tenants = sys.argv[1:]
cfg = Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"})


def client(service, key="provision", secret="provision"):
    return boto3.client(service, endpoint_url=endpoint, region_name=region, config=cfg,
                        aws_access_key_id=key, aws_secret_access_key=secret)


def set_auth(count):
    req = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=count.encode(), method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def provisioned():
    try:
        with open(out_env) as f:
            env = dict(line.removeprefix("export ").strip().split("=", 1) for line in f if "=" in line)
        client("sts", env["FHIRLAKE_STS_ACCESS_KEY"], env["FHIRLAKE_STS_SECRET_KEY"]).get_caller_identity()
        # With auth off any key passes; an unknown key must be refused too.
        try:
            client("sts", "AKIAUNKNOWNKEY000000", "x").get_caller_identity()
            return False
        except ClientError:
            return True
    except (OSError, KeyError, ValueError, ClientError):
        return False


def ignore_exists(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("EntityAlreadyExists", "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def main():
    if provisioned():
        return
    set_auth("inf")
    iam, s3 = client("iam"), client("s3")
    base = f"arn:aws:iam::{account}:user/fhirlake-base"
    ignore_exists(iam.create_user, UserName="fhirlake-base")
    iam.put_user_policy(UserName="fhirlake-base", PolicyName="assume-tenant-roles", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                       "Resource": f"arn:aws:iam::{account}:role/fhirlake-*"}]}))
    for old in iam.list_access_keys(UserName="fhirlake-base")["AccessKeyMetadata"]:
        iam.delete_access_key(UserName="fhirlake-base", AccessKeyId=old["AccessKeyId"])
    key = iam.create_access_key(UserName="fhirlake-base")["AccessKey"]

    def trust(principal):
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})

    for t in tenants:
        bucket = f"fhirlake-{t}"
        ignore_exists(s3.create_bucket, Bucket=bucket)
        ignore_exists(iam.create_role, RoleName=bucket, AssumeRolePolicyDocument=trust(base), MaxSessionDuration=43200)
        iam.put_role_policy(RoleName=bucket, PolicyName="own-bucket", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*",
                           "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
    ignore_exists(iam.create_role, RoleName="fhirlake-untrusted",
                  AssumeRolePolicyDocument=trust(f"arn:aws:iam::{account}:user/someone-else"))
    set_auth("0")
    fd = os.open(out_env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"export FHIRLAKE_STS_ACCESS_KEY={key['AccessKeyId']}\n")
        f.write(f"export FHIRLAKE_STS_SECRET_KEY={key['SecretAccessKey']}\n")
    if not provisioned():
        sys.exit("the local STS was provisioned but the base user's key does not work")


main()
