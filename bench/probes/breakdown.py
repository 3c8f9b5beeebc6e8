#!/usr/bin/env python3
"""Where one write's time goes: reads the probe files of a probed build
(bench/probes/probes.patch) and prints each step of a write through the
leader, mean and median in microseconds over every write probed from end to end.

    python3 bench/probes/breakdown.py DIR
"""
import glob
import os
import statistics
import sys

HANDLER_START, PROPOSE_START, CLIENT_WRITE = 1, 2, 3
APPEND_START, APPEND_WRITTEN, SYNC_START, SYNC_DONE = 10, 11, 12, 13
APPLY_START, APPLY_DONE = 20, 21
CLIENT_WRITE_DONE, PROPOSE_DONE, HANDLER_DONE = 30, 31, 32
AE_SENT, AE_REPLY = 700, 800
FOLLOWER_FRAME, FOLLOWER_CALL_DONE, FOLLOWER_REPLIED = 40, 41, 42


def load(path):
    """{step: {index: first time}}"""
    out = {}
    with open(path) as f:
        for line in f:
            step, index, t = (int(x) for x in line.split())
            out.setdefault(step, {}).setdefault(index, t)
    return out


def main():
    files = [load(p) for p in sorted(glob.glob(os.path.join(sys.argv[1], "probe-*.txt")))]
    leaders = [f for f in files if HANDLER_START in f]
    if len(leaders) != 1:
        sys.exit(f"expected one leader's probe file, found {len(leaders)}")
    lead = leaders[0]
    followers = [f for f in files if f is not lead]
    steps = [
        ("handler start -> propose (auth done; audit, checks)", HANDLER_START, PROPOSE_START, "L"),
        ("propose -> client_write called", PROPOSE_START, CLIENT_WRITE, "L"),
        ("client_write -> leader's append (openraft core)", CLIENT_WRITE, APPEND_START, "L"),
        ("leader's append: encode + write", APPEND_START, APPEND_WRITTEN, "L"),
        ("written -> sync thread starts fdatasync", APPEND_WRITTEN, SYNC_START, "L"),
        ("leader's fdatasync", SYNC_START, SYNC_DONE, "L"),
        ("synced -> AppendEntries sent (core, replication task)", SYNC_DONE, "sent", "L"),
        ("sent -> follower has the frame (loopback, read)", "sent", FOLLOWER_FRAME, "F"),
        ("frame -> follower's append (its core)", FOLLOWER_FRAME, APPEND_START, "F"),
        ("follower's append: encode + write", APPEND_START, APPEND_WRITTEN, "F"),
        ("written -> its sync thread starts fdatasync", APPEND_WRITTEN, SYNC_START, "F"),
        ("follower's fdatasync", SYNC_START, SYNC_DONE, "F"),
        ("synced -> follower's answer ready (its core)", SYNC_DONE, FOLLOWER_CALL_DONE, "F"),
        ("answer encoded and written", FOLLOWER_CALL_DONE, FOLLOWER_REPLIED, "F"),
        ("written -> leader has the reply (loopback, read)", FOLLOWER_REPLIED, "reply", "F"),
        ("reply -> apply starts (core: commit; state-machine worker)", "reply", APPLY_START, "L"),
        ("apply", APPLY_START, APPLY_DONE, "L"),
        ("applied -> client_write returns", APPLY_DONE, CLIENT_WRITE_DONE, "L"),
        ("client_write returned -> propose returns", CLIENT_WRITE_DONE, PROPOSE_DONE, "L"),
        ("propose returned -> handler done (answer built)", PROPOSE_DONE, HANDLER_DONE, "L"),
    ]
    sums = {name: [] for name, *_ in steps}
    totals = []
    targets = sorted({s - AE_SENT for s in lead if AE_SENT < s < AE_SENT + 100})
    for index in lead.get(HANDLER_DONE, {}):
        if index not in lead.get(HANDLER_START, {}):
            continue
        # The follower that answered first: its reply made the commit quorum.
        replies = [(lead.get(AE_REPLY + t, {}).get(index), t) for t in targets]
        replies = [(r, t) for r, t in replies if r is not None]
        if not replies:
            continue
        reply, target = min(replies)
        sent = lead.get(AE_SENT + target, {}).get(index)
        cand = [f for f in followers
                if f.get(FOLLOWER_REPLIED, {}).get(index, 1 << 63) <= reply]
        if sent is None or not cand:
            continue
        fol = max(cand, key=lambda f: f[FOLLOWER_REPLIED][index])
        where = {"L": lead, "F": fol}

        def t(step, side):
            if step == "sent":
                return sent
            if step == "reply":
                return reply
            return where[side].get(step, {}).get(index)

        row = []
        for name, a, b, side in steps:
            ta, tb = t(a, side), t(b, side)
            if ta is None or tb is None:
                break
            row.append((name, (tb - ta) / 1000))
        else:
            for name, us in row:
                sums[name].append(us)
            totals.append((lead[HANDLER_DONE][index] - lead[HANDLER_START][index]) / 1000)
    if not totals:
        sys.exit("no write was probed from end to end")
    print(f"{len(totals)} writes through the leader, microseconds")
    print(f"  {'step':<62} {'mean':>7} {'p50':>7}")
    for name, *_ in steps:
        v = sums[name]
        print(f"  {name:<62} {statistics.mean(v):>7.0f} {statistics.median(v):>7.0f}")
    print(f"  {'handler start -> handler done, in all':<62} {statistics.mean(totals):>7.0f} "
          f"{statistics.median(totals):>7.0f}")


if __name__ == "__main__":
    main()
