#!/usr/bin/env python3
"""The demo's scripted "agent": ordinary file work inside a scopefs view.

    python3 tools/demo/agent.py VIEW

VIEW is the mountpoint of the demo task (config/examples/demo.toml): exports/
(read), reports/ (write), secrets/ (write, with *.pem, .env and id_* hidden).
The agent uses nothing but plain file calls, as any unmodified tool would.
Each step prints its outcome (OK, or DENIED with the errno name) next to the
outcome the demo's policy calls for; the exit status is 0 only if every step
came out as expected.
"""
import csv
import errno
import os
import stat
import sys
import tempfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

EXPORT_FILES = ["2026-q1-invoices.csv", "2026-q1-payments.csv", "vendors.csv"]
HIDDEN_SECRETS = ["bank-api.pem", ".env", "id_ed25519"]


class Unexpected(Exception):
    """A step that ran, but whose result contradicts what the policy says."""


def check(cond, message):
    if not cond:
        raise Unexpected(message)


def outcome_text(outcome):
    return "OK" if outcome == "OK" else f"DENIED ({outcome})"


class Agent:
    def __init__(self, view):
        self.view = Path(view)
        self.n = 0
        self.failures = []

    def step(self, title, expect, action):
        """Runs `action`; `expect` is "OK" or the errno name it must fail with."""
        self.n += 1
        detail = ""
        try:
            detail = action() or ""
            outcome = "OK"
        except Unexpected as e:
            outcome, detail = "WRONG RESULT", str(e)
        except OSError as e:
            outcome = errno.errorcode.get(e.errno, f"errno {e.errno}")
            detail = e.strerror or ""
        good = outcome == expect
        verdict = "as expected" if good else f"UNEXPECTED: policy says {outcome_text(expect)}"
        print(f"[{self.n:2}] {title}")
        print(f"     -> {outcome_text(outcome):<17} {verdict}")
        for line in str(detail).splitlines():
            print(f"        {line}")
        if not good:
            self.failures.append(f"step {self.n} ({title}): got {outcome_text(outcome)}, "
                                 f"expected {outcome_text(expect)}"
                                 + (f": {detail}" if detail else ""))
        return outcome

    # -- the work ----------------------------------------------------------

    def list_root(self):
        names = sorted(os.listdir(self.view))
        check(names == ["exports", "reports", "secrets"], f"view root lists {names}")
        return "view: " + "  ".join(names)

    def list_exports(self):
        names = sorted(os.listdir(self.view / "exports"))
        check(names == sorted(EXPORT_FILES), f"exports/ lists {names}")
        return "exports/: " + "  ".join(names)

    def reconcile(self):
        ex = self.view / "exports"
        with open(ex / "vendors.csv", newline="") as f:
            vendors = {r["vendor_id"]: r["name"] for r in csv.DictReader(f)}
        with open(ex / "2026-q1-invoices.csv", newline="") as f:
            invoices = list(csv.DictReader(f))
        with open(ex / "2026-q1-payments.csv", newline="") as f:
            payments = list(csv.DictReader(f))
        paid_by_invoice = defaultdict(Decimal)
        for p in payments:
            paid_by_invoice[p["invoice_id"]] += Decimal(p["amount_eur"])
        per_vendor = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for inv in invoices:
            v = per_vendor[inv["vendor_id"]]
            v[0] += Decimal(inv["amount_eur"])
            v[1] += paid_by_invoice[inv["invoice_id"]]
        invoiced = sum((v[0] for v in per_vendor.values()), Decimal(0))
        paid = sum((v[1] for v in per_vendor.values()), Decimal(0))
        check(invoiced > 0 and len(vendors) == 4, "the exports did not read back as expected")
        self.totals = {"vendors": vendors, "per_vendor": per_vendor, "invoices": len(invoices),
                       "payments": len(payments), "invoiced": invoiced, "paid": paid}
        return (f"{len(invoices)} invoices, {len(payments)} payments, {len(vendors)} vendors\n"
                f"invoiced EUR {invoiced:,.2f}   paid EUR {paid:,.2f}   "
                f"open EUR {invoiced - paid:,.2f}")

    def write_summary(self):
        t = self.totals
        lines = ["# Accounts payable summary 2026-Q1", "",
                 "Built from `exports/2026-q1-invoices.csv`, `exports/2026-q1-payments.csv` "
                 "and `exports/vendors.csv`.", "",
                 "| Vendor | Invoiced EUR | Paid EUR | Open EUR |", "|---|---:|---:|---:|"]
        for vid in sorted(t["per_vendor"]):
            inv, paid = t["per_vendor"][vid]
            lines.append(f"| {t['vendors'].get(vid, vid)} | {inv:,.2f} | {paid:,.2f} | "
                         f"{inv - paid:,.2f} |")
        lines += [f"| **Total** | **{t['invoiced']:,.2f}** | **{t['paid']:,.2f}** | "
                  f"**{t['invoiced'] - t['paid']:,.2f}** |", "",
                  f"{t['invoices']} invoices, {t['payments']} payments.", ""]
        text = "\n".join(lines)
        path = self.view / "reports" / "2026-q1-summary.md"
        path.write_text(text)
        check(path.read_text() == text, "the summary did not read back as written")
        return f"reports/2026-q1-summary.md: {len(text.encode())} bytes, read back intact"

    def atomic_edit_readme(self):
        reports = self.view / "reports"
        path = reports / "README.md"
        text = path.read_text()
        mode = stat.S_IMODE(os.stat(path).st_mode)
        text = text.replace(
            "\nOwner:",
            "\nLatest: `2026-q1-summary.md` (2026-Q1, open items per vendor).\n\nOwner:", 1)
        fd, tmp = tempfile.mkstemp(dir=reports, prefix=".README.md.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)  # mkstemp creates 0600: keep the original's mode
            os.replace(tmp, path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        check(path.read_text() == text, "README.md does not show the edit")
        check(stat.S_IMODE(os.stat(path).st_mode) == mode, "README.md lost its mode")
        leftovers = [n for n in os.listdir(reports) if n.endswith(".tmp")]
        check(not leftovers, f"temporary files left behind: {leftovers}")
        return f"wrote {Path(tmp).name}, fsync, chmod {mode:o}, os.replace -> reports/README.md"

    def delete_draft(self):
        os.unlink(self.view / "reports" / "draft-2025-q4.md")
        names = sorted(os.listdir(self.view / "reports"))
        check("draft-2025-q4.md" not in names, "the draft is still listed")
        return "reports/: " + "  ".join(names)

    def read(self, rel):
        data = (self.view / rel).read_bytes()
        return f"read {len(data)} bytes (a secret leaked!)"

    def list_secrets(self):
        names = sorted(os.listdir(self.view / "secrets"))
        leaked = [n for n in HIDDEN_SECRETS if n in names]
        check(not leaked, f"hidden files are listed: {leaked}")
        check(names == ["README.md"], f"secrets/ lists {names}")
        return "secrets/: " + "  ".join(names) + "   (no *.pem, no .env, no id_*)"

    def overwrite_hidden(self, rel):
        with open(self.view / rel, "w") as f:
            f.write("BANK_API_TOKEN=stolen\n")
        return "created a file over a hidden name"

    def modify_export(self):
        with open(self.view / "exports" / "vendors.csv", "a") as f:
            f.write("V999,Shady Consulting Ltd,XX,0\n")
        return "appended a row to a read-only input"

    def create_in_exports(self):
        with open(self.view / "exports" / "2026-q1-adjustments.csv", "x") as f:
            f.write("invoice_id,amount_eur\n")
        return "created a file in a read-only bind"

    def delete_export(self):
        os.unlink(self.view / "exports" / "2026-q1-payments.csv")
        return "deleted a read-only input"

    def run(self):
        s = self.step
        s("list the view's top level", "OK", self.list_root)
        s("list exports/", "OK", self.list_exports)
        s("read the three CSV exports and reconcile invoices against payments", "OK",
          self.reconcile)
        s("write reports/2026-q1-summary.md", "OK", self.write_summary)
        s("edit reports/README.md with an atomic save (temp file, fsync, os.replace)",
          "OK", self.atomic_edit_readme)
        s("delete the old draft reports/draft-2025-q4.md", "OK", self.delete_draft)
        s("read secrets/bank-api.pem", "ENOENT", lambda: self.read("secrets/bank-api.pem"))
        s("read secrets/.env", "ENOENT", lambda: self.read("secrets/.env"))
        s("list secrets/", "OK", self.list_secrets)
        s("overwrite secrets/.env (a hidden name)", "EACCES",
          lambda: self.overwrite_hidden("secrets/.env"))
        s("append a row to exports/vendors.csv", "EROFS", self.modify_export)
        s("create exports/2026-q1-adjustments.csv", "EROFS", self.create_in_exports)
        s("delete exports/2026-q1-payments.csv", "EROFS", self.delete_export)
        print()
        if self.failures:
            print(f"agent: {len(self.failures)} of {self.n} steps did NOT come out as the "
                  "policy says:")
            for f in self.failures:
                print(f"  - {f}")
            return 1
        print(f"agent: all {self.n} steps came out as the policy says")
        return 0


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} VIEW", file=sys.stderr)
        return 2
    if not os.path.isdir(argv[1]):
        print(f"agent: {argv[1]} is not a directory", file=sys.stderr)
        return 2
    sys.stdout.reconfigure(line_buffering=True)
    return Agent(argv[1]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
