"""Smoke test: create the synthesized stack on moto's CloudFormation and check it completes.

Usage: moto_stack.py CDK_OUT_DIR STACK_NAME MOTO_ENDPOINT

Owns publishing the file assets the template refers to (the Lambda zip) to moto's S3,
the CDK bootstrap-version parameter the template checks, and waiting for
CREATE_COMPLETE. It only talks to the moto endpoint it is given, with throwaway
credentials, never to AWS.
"""
import io
import json
import os
import sys
import time
import zipfile

import boto3

ACCOUNT = "123456789012"
REGION = "us-east-1"


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def subst(text):
    return text.replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", REGION).replace("${AWS::Partition}", "aws")


def zip_dir(path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for root, _, files in os.walk(path):
            for f in files:
                full = os.path.join(root, f)
                z.write(full, os.path.relpath(full, path))
    return buf.getvalue()


def publish_assets(out_dir, stack, endpoint):
    s3 = client("s3", endpoint)
    manifest_path = os.path.join(out_dir, f"{stack}.assets.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    published = 0
    for asset in manifest.get("files", {}).values():
        src = os.path.join(out_dir, asset["source"]["path"])
        body = zip_dir(src) if asset["source"].get("packaging") == "zip" else open(src, "rb").read()
        for dest in asset["destinations"].values():
            bucket, key = subst(dest["bucketName"]), subst(dest["objectKey"])
            try:
                s3.create_bucket(Bucket=bucket)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            published += 1
    return published


def main():
    out_dir, stack, endpoint = sys.argv[1:4]
    published = publish_assets(out_dir, stack, endpoint)
    # The template's CheckBootstrapVersion rule reads this parameter.
    client("ssm", endpoint).put_parameter(
        Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String", Overwrite=True
    )
    with open(os.path.join(out_dir, f"{stack}.template.json")) as f:
        body = f.read()
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket="smoke-templates")
    s3.put_object(Bucket="smoke-templates", Key="template.json", Body=body.encode())
    cfn = client("cloudformation", endpoint)
    cfn.create_stack(
        StackName=stack,
        TemplateURL="https://smoke-templates.s3.amazonaws.com/template.json",
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    deadline = time.time() + 300
    status = ""
    while time.time() < deadline:
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
        if not status.endswith("IN_PROGRESS"):
            break
        time.sleep(1)
    resources = cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    failed = [r for r in resources if not r["ResourceStatus"].endswith("COMPLETE")]
    print(f"moto CloudFormation: stack {stack} {status}, {len(resources)} resources, {published} file assets published")
    if status != "CREATE_COMPLETE" or failed:
        for r in failed:
            print(f"  {r['LogicalResourceId']} ({r['ResourceType']}): {r['ResourceStatus']} {r.get('ResourceStatusReason', '')}")
        sys.exit(1)
    # Spot checks that moto really created what matters (moto skips the resource
    # types it does not implement, e.g. CloudWatch alarms, so those are not checked).
    template = json.loads(body)["Resources"].values()
    want_streams = sorted(r["Properties"]["Name"] for r in template if r["Type"] == "AWS::Kinesis::Stream")
    want_functions = sum(1 for r in template if r["Type"] == "AWS::Lambda::Function")
    want_params = sorted(r["Properties"]["Name"] for r in template if r["Type"] == "AWS::SSM::Parameter")
    streams = sorted(client("kinesis", endpoint).list_streams()["StreamNames"])
    functions = client("lambda", endpoint).list_functions()["Functions"]
    params = sorted(
        p["Name"]
        for p in client("ssm", endpoint).describe_parameters()["Parameters"]
        if p["Name"].startswith("/pg-cdc-to-kinesis-config/")
    )
    print(f"  streams {streams}, {len(functions)} functions, config parameters {params}")
    problems = []
    if streams != want_streams:
        problems.append(f"streams {streams} != {want_streams}")
    if len(functions) != want_functions:
        problems.append(f"{len(functions)} functions, expected {want_functions}")
    if params != want_params:
        problems.append(f"config parameters {params} != {want_params}")
    for fn in functions:
        if fn.get("Runtime") != "provided.al2023" or fn.get("Handler") != "bootstrap":
            problems.append(f"function {fn['FunctionName']}: runtime {fn.get('Runtime')}, handler {fn.get('Handler')}")
    if problems:
        print("  " + "; ".join(problems))
        sys.exit(1)
    print("moto CloudFormation smoke test passed")

if __name__ == "__main__":
    main()
