"""Drive `auditlake shell` under a real pseudo-terminal, as a person at a keyboard would.

Usage: shell_pty.py BINARY LAKE HOME REQUESTS OUTPUT_FILE

The shell runs as the session leader of a new pty (so Ctrl-C is a SIGINT from the terminal's
line discipline, not a signal this script sends). Each step writes keystrokes and waits for a
pattern in what the terminal shows (escape sequences removed); a step that does not see its
pattern within its time fails with the transcript. Used by tests/shell.rs.
"""
import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time

binary, lake, home, requests, output_file = sys.argv[1:]
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")


class Shell:
    def __init__(self):
        pid, fd = pty.fork()
        if pid == 0:
            env = dict(os.environ, HOME=home, TERM="xterm", XDG_STATE_HOME="")
            env.pop("AUDITLAKE_HISTORY", None)
            os.execve(binary, [binary, "shell", "--lake", lake], env)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.pid, self.fd, self.seen, self.all = pid, fd, b"", b""

    def read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return None
        self.all += data
        self.seen += data
        return True

    def expect(self, pattern, timeout=60.0, what=None):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        while True:
            text = ANSI.sub(b"", self.seen)
            m = rx.search(text)
            if m:
                # What follows the match stays for the next step.
                self.seen = text[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0 or self.read(min(left, 0.5)) is None:
                self.fail(f"did not see {what or pattern!r}")

    def send(self, keys):
        os.write(self.fd, keys.encode())

    def fail(self, why):
        shown = ANSI.sub(b"", self.all).decode(errors="replace")
        sys.stderr.write(f"shell_pty: {why}\n--- terminal transcript ---\n{shown}\n---\n")
        sys.exit(1)

    def exit_code(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self.read(0.2)
        self.fail("the shell did not exit")


PROMPT = r"auditlake> "
s = Shell()
s.expect(PROMPT, 120, "the first prompt")

s.send(".tables\r")
s.expect(r"audit_events\s+one row per event")
s.expect(PROMPT)

# A statement over two lines: Enter before the `;` continues it.
s.send("SELECT count(*) AS n\r")
s.expect(r"\.\.\.> ", what="the continuation prompt")
s.send("FROM requests;\r")
s.expect(rf"\b{requests}\b", what=f"the request count {requests}")
s.expect(PROMPT)

# Tab completes a table name: `reque` alone is no relation, so the count proves it.
s.send("SELECT count(*) AS m FROM reque\t")
s.expect(r"FROM requests", what="`reque` completed to `requests`")
s.send(";\r")
s.expect(rf"\b{requests}\b")
s.expect(PROMPT)

s.send(".mode csv\r")
s.expect(PROMPT)
s.send("SELECT verb, count(*) AS c FROM requests GROUP BY verb ORDER BY verb;\r")
s.expect(r"verb,c\n")
s.expect(PROMPT)

s.send(".timer on\r")
s.expect(PROMPT)
s.send("SELECT 1 AS one;\r")
s.expect(r"one\n1\n")
s.expect(r"Run Time: [0-9.]+ s")
s.expect(PROMPT)

# A named query that names a subject needs it, and says so; the shell carries on.
s.send(".named actor-timeline\r")
s.expect(r"error: .*actor", what="the missing-parameter error")
s.expect(PROMPT)
s.send(".named proxy-summary --since 2000-01-01\r")
s.expect(r"proxy_profile", what="proxy-summary's header")
s.expect(PROMPT)

s.send(f".output {output_file}\r")
s.expect(PROMPT)
s.send("SELECT 7 AS seven;\r")
s.expect(r"1 rows written")
s.send(".output\r")
s.expect(PROMPT)

# Ctrl-C during a statement that would run for hours cancels it, not the shell.
s.send(".mode table\r")
s.expect(PROMPT)
s.send("SELECT sum(length(a.audit_id) + length(b.audit_id) + length(c.audit_id)) AS total "
       "FROM audit a, audit b, audit c;\r")
time.sleep(2.0)
s.send("\x03")
s.expect(r"cancelled after [0-9.]+ s", 60, "the cancellation")
s.expect(PROMPT)
s.send("SELECT 42 AS answer;\r")
s.expect(r"\b42\b", what="an answer after the cancellation")
s.expect(PROMPT)

# Ctrl-C at the prompt drops a half-typed statement.
s.send("SELECT 'never'\r")
s.expect(r"\.\.\.> ")
s.send("\x03")
s.expect(PROMPT)
s.send("SELECT 5 AS five;\r")
s.expect(r"\bfive\b")
if b"never" in ANSI.sub(b"", s.seen):
    s.fail("the dropped statement ran")
s.expect(PROMPT)

s.send(".quit\r")
code = s.exit_code()
if code != 0:
    s.fail(f".quit exited {code}")

# History is kept per user: a new shell recalls the last entry with Up.
t = Shell()
t.expect(PROMPT, 120, "the second shell's prompt")
t.send("\x1b[A")
t.expect(r"\.quit", what="`.quit` recalled from the history")
t.send("\r")
code = t.exit_code()
if code != 0:
    t.fail(f"the second shell exited {code}")
print("ok")
