#!/usr/bin/env python3
"""Generates plans for the validate benchmark (bench/README.md).

    gen.py many DIR N        N plans of 3 tests and 5 targets each, in DIR
    gen.py big FILE T TESTS  one plan with T host targets (listed inline) and TESTS tests
"""
import os
import sys

STEPS = """    steps:
      - connect: {{}}
        expect: 220
      - ehlo: ${{settings.helo}}
        capabilities: [PIPELINING, SIZE]
      - mail_from: ${{sender}}
        expect: 250 2.1.0
      - rcpt_to: kate-{i}@fabrikam.com
        notify: [success, failure]
        expect: [250 2.1.5, {{ code: 5xx, enhanced: 5.1.x, text: "(?i)unknown" }}]
      - data:
          headers: {{ Subject: "bench {i} ${{run.id}}" }}
          body: "hello\\n.dot\\n"
        capture: {{ queue_id: "queued as (\\\\S+)" }}
      - vrfy: ${{capture.queue_id}}
        expect: {{ not: 5xx }}
      - quit: {{}}
"""


def plan(name, targets, tests):
    out = [f"version: 1\nname: {name}\nvars:\n  sender: chris@contoso.com\n",
           "settings:\n  helo: probe.contoso.com\n  timeouts: { connect: 10s, reply: 30s }\n",
           "targets:\n"]
    for t in range(targets):
        out.append(f"  - host: mx{t}.bench.test\n    port: 2525\n    tags: [t{t % 10}]\n")
    out.append("tests:\n")
    for i in range(tests):
        out.append(f"  - name: test {i}\n")
        out.append(STEPS.format(i=i))
    return "".join(out)


def main():
    kind = sys.argv[1]
    if kind == "many":
        d, n = sys.argv[2], int(sys.argv[3])
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            with open(os.path.join(d, f"plan-{i:04}.yaml"), "w") as f:
                f.write(plan(f"plan {i}", 5, 3))
    elif kind == "big":
        with open(sys.argv[2], "w") as f:
            f.write(plan("big", int(sys.argv[3]), int(sys.argv[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
