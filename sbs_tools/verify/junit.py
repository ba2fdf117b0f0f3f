"""JUnit XML for CI: one test suite per file, one test case per check family.

CI systems (GitHub Actions test reporters, GitLab, Jenkins) then show each
family of findings natively: a failing case lists its errors (and, with
``strict``, its warnings); passing cases carry warnings and notes in
``system-out``; families that could not run are ``skipped``.
"""
from __future__ import annotations

from .findings import FAMILIES, Report


def _text(findings) -> str:
    lines = []
    for f in findings:
        where = f.where()
        lines.append(f"{f.severity}: {f.code}: {f.message}" + (f" [{where}]" if where else "")
                     + (f"\n  fix: {f.hint}" if f.hint else ""))
    return "\n".join(lines)


def to_junit(reports: list[Report], strict: bool = False) -> str:
    """Render reports as a JUnit XML document (string)."""
    import xml.etree.ElementTree as ET  # only when a JUnit file is written (`sbs verify` imports this module)

    root = ET.Element("testsuites", name="sbs verify")
    total = failures = skipped_total = 0
    for r in reports:
        suite = ET.SubElement(root, "testsuite", name=r.path)
        s_tests = s_fail = s_skip = 0
        unreadable = any(f.family == "format" for f in r.errors) or not r.facts
        for fam, doc in FAMILIES.items():
            case = ET.SubElement(suite, "testcase", classname=f"sbs.verify.{fam}", name=f"{fam}: {doc}",
                                 file=r.path, time="0")
            s_tests += 1
            mine = [f for f in r.findings if f.family == fam]
            bad = [f for f in mine if f.severity == "error" or (strict and f.severity == "warning")]
            if bad:
                s_fail += 1
                el = ET.SubElement(case, "failure", type=bad[0].code,
                                   message=f"{len(bad)} finding(s): " + ", ".join(sorted({f.code for f in bad})))
                el.text = _text(bad)
            elif (fam == "deep" and not r.deep) or (fam == "run" and not r.run) or \
                    (unreadable and fam not in ("format", "container")):
                s_skip += 1
                ET.SubElement(case, "skipped", message=f"run with --{fam}" if fam in ("deep", "run") and
                              not getattr(r, fam) else "the file could not be read")
            out = [f for f in mine if f not in bad]
            text = _text(out)
            if fam == "compat" and r.compat:
                rows = [f"{g.key:<11} {'loads' if g.loads else 'no':<5} "
                        f"{'' if g.runs is None else ('runs' if g.runs else 'cannot run'):<10} {g.label}"
                        + "".join(f"\n    {x}" for x in g.reasons) for g in r.compat]
                text = (text + "\n" if text else "") + "\n".join(rows)
            if text:
                ET.SubElement(case, "system-out").text = text
        suite.set("tests", str(s_tests))
        suite.set("failures", str(s_fail))
        suite.set("errors", "0")
        suite.set("skipped", str(s_skip))
        total += s_tests
        failures += s_fail
        skipped_total += s_skip
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", "0")
    root.set("skipped", str(skipped_total))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
