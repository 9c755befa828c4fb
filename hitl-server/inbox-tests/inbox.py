"""The reviewer inbox in a real browser (Debian's Chromium, driven by Playwright).

Usage: python inbox.py URL SCREENSHOT_DIR

URL is the example server started with `--tokens` on the tokens file next to this
script (alice and bob have the role `finance`, eve has `sales`). Every flow drives the
page with the keyboard and mouse as a reviewer would, and checks the outcome through
the HTTP API. Screenshots of the list, a card, an edit error and a thread page are
written to SCREENSHOT_DIR.
"""

import json
import os
import sys
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

URL = sys.argv[1].rstrip("/")
SHOTS = sys.argv[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKENS = {"alice": "alice-token", "bob": "bob-token", "eve": "eve-token"}


def call(method, path, body=None, who="alice"):
    req = urllib.request.Request(
        URL + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {TOKENS[who]}",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def start(assistant, input):
    status, thread = call("POST", "/threads", {})
    assert status == 200, thread
    tid = thread["thread_id"]
    status, out = call(
        "POST", f"/threads/{tid}/runs/wait", {"assistant_id": assistant, "input": input}
    )
    assert status == 200, out
    assert out.get("__interrupt__"), out
    return tid


def state(tid):
    status, s = call("GET", f"/threads/{tid}/state")
    assert status == 200, s
    return s


def messages(tid):
    return state(tid)["values"].get("messages", [])


def tool_messages(tid, name):
    return [m for m in messages(tid) if m.get("type") == "tool" and m.get("name") == name]


CLEAN_UP = {"messages": [{"role": "user", "content": "Clean up the workspace"}]}
checks = 0


def check(cond, what):
    global checks
    assert cond, what
    checks += 1


def sign_in(page, who):
    page.goto(URL + "/inbox")
    page.get_by_label("Token").fill(TOKENS[who])
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("reviewer")).to_contain_text(f"Signed in as {who}")


def card_of(page, tid):
    return page.locator(f'article.card[data-thread="{tid}"]')


def choose(card, tool, decision):
    action = card.locator("fieldset.action").filter(has=card.page.locator(f"legend:text-is('{tool}')"))
    action.get_by_role("radio", name=decision).check()
    return action


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

    # -- threads waiting for reviewers
    approve_tid = start("agent", CLEAN_UP)
    reject_tid = start("agent", CLEAN_UP)
    race_tid = start("agent", CLEAN_UP)
    pay_tid = start("payments", {"messages": [{"role": "user", "content": "Pay ACME"}]})
    ask_tid = start("approve", {"item": "a new laptop"})

    alice = browser.new_context(viewport={"width": 1100, "height": 900})
    page = alice.new_page()
    sign_in(page, "alice")
    for tid in (approve_tid, reject_tid, race_tid, pay_tid, ask_tid):
        expect(card_of(page, tid)).to_be_visible()
    shown = page.locator("article.card").count()
    check(shown == 5, f"alice sees the five reviews, once each ({shown} cards)")
    # The most urgent first: the payment expires, the others do not.
    order = page.locator("article.card header a").all_inner_texts()
    check(order[0].endswith("(payments)"), f"the expiring payment comes first: {order}")
    expect(card_of(page, pay_tid)).to_contain_text("expires in")
    expect(card_of(page, pay_tid)).to_contain_text("roles: finance")
    page.screenshot(path=os.path.join(SHOTS, "inbox-list.png"), full_page=True)

    # -- approve: both calls of a batched review, keyboard only for the submit
    card = card_of(page, approve_tid)
    card.screenshot(path=os.path.join(SHOTS, "inbox-card.png"))
    # Keyboard only: focus a choice, Space selects it, Enter on the button sends.
    for tool in ("delete_file", "send_email"):
        action = card.locator("fieldset.action").filter(has=page.locator(f"legend:text-is('{tool}')"))
        action.get_by_role("radio", name="Approve").focus()
        page.keyboard.press("Space")
        expect(action.get_by_role("radio", name="Approve")).to_be_checked()
    card.get_by_role("button", name="Send decision").focus()
    page.keyboard.press("Enter")
    expect(card.locator(".events")).to_contain_text("assistant: Here is what happened", timeout=15000)
    expect(card).to_have_count(0, timeout=15000)
    check(len(tool_messages(approve_tid, "delete_file")) == 1, "the approved deletion ran once")
    check("Deleted old-report.txt" in tool_messages(approve_tid, "delete_file")[0]["content"], "deleted")
    check(state(approve_tid)["next"] == [], "the approved thread finished")

    # -- reject with a reason, respond in place of the email
    card = card_of(page, reject_tid)
    action = choose(card, "delete_file", "Reject")
    action.get_by_label("Reason").fill("keep it for the audit")
    action = choose(card, "send_email", "Respond")
    action.get_by_label("Answer in place of the call").fill("Bob already knows.")
    card.get_by_role("button", name="Send decision").click()
    expect(card.locator(".events")).to_contain_text("keep it for the audit", timeout=15000)
    final = [m for m in messages(reject_tid) if m.get("type") == "ai"][-1]["content"]
    check("keep it for the audit" in final, f"the model's answer reflects the reason: {final}")
    check("Bob already knows." in final, f"the response stands in for the email: {final}")
    check("Deleted" not in json.dumps(messages(reject_tid)), "the rejected deletion did not run")

    # -- edit with an invalid value: the server's message next to the field, nothing runs
    card = card_of(page, pay_tid)
    action = choose(card, "pay", "Edit")
    action.get_by_label("amount").fill("-5")
    card.get_by_role("button", name="Send decision").click()
    field_error = action.locator('[data-field="amount"]')
    expect(field_error).to_contain_text("amount", timeout=10000)
    card.screenshot(path=os.path.join(SHOTS, "inbox-edit-error.png"))
    status, thread = call("GET", f"/threads/{pay_tid}")
    check(thread["status"] == "interrupted", f"the payment still waits: {thread['status']}")
    check(tool_messages(pay_tid, "pay") == [], "nothing ran after the refused edit")
    action.get_by_label("amount").fill("900")
    card.get_by_role("button", name="Send decision").click()
    expect(card.locator(".events")).to_contain_text("Paid 900 EUR", timeout=15000)
    check(len(tool_messages(pay_tid, "pay")) == 1, "the edited payment ran once")

    # -- a custom typed interrupt: a form from its answer schema
    card = card_of(page, ask_tid)
    card.get_by_label("approved").check()
    card.get_by_role("button", name="Send decision").click()
    expect(card.locator(".status")).to_have_text("Done.", timeout=15000)
    check(state(ask_tid)["values"]["approved"] is True, "the typed answer was applied")

    # -- two reviewers answer the same review: one wins, the other is told
    bob = browser.new_context()
    bob_page = bob.new_page()
    sign_in(bob_page, "bob")
    page.get_by_role("button", name="Refresh").click()
    alice_card, bob_card = card_of(page, race_tid), card_of(bob_page, race_tid)
    for c in (alice_card, bob_card):
        choose(c, "delete_file", "Approve")
        choose(c, "send_email", "Reject")
    alice_card.get_by_role("button", name="Send decision").click()
    expect(alice_card.locator(".events")).to_contain_text("assistant:", timeout=15000)
    bob_card.get_by_role("button", name="Send decision").click()
    expect(bob_card.locator(".card-error")).to_contain_text("Already answered", timeout=10000)
    check(len(tool_messages(race_tid, "delete_file")) == 1, "the raced call ran once")
    status, records = call("GET", f"/threads/{race_tid}/decisions")
    check(len(records["records"]) == 1, "one decision recorded for the raced review")
    check(records["records"][0]["record"]["decided_by"]["id"] == "alice", "alice won")

    # -- a reviewer without the role does not see the payment
    other = start("payments", {"messages": [{"role": "user", "content": "Pay ACME again"}]})
    eve = browser.new_context()
    eve_page = eve.new_page()
    sign_in(eve_page, "eve")
    expect(eve_page.get_by_test_id("count")).to_be_visible()
    check(card_of(eve_page, other).count() == 0, "eve (sales) does not see the payment")
    page.get_by_role("button", name="Refresh").click()
    expect(card_of(page, other)).to_be_visible()
    status, _ = call(
        "POST",
        f"/threads/{other}/runs/wait",
        {"assistant_id": "payments", "command": {"resume": {"decisions": [{"type": "approve"}]}}},
        who="eve",
    )
    check(status == 403, f"eve cannot answer it over the API either ({status})")

    # -- a thread page: the conversation, the decisions with their chain, checkpoints
    page.goto(f"{URL}/inbox#/thread/{pay_tid}")
    expect(page.get_by_test_id("chain")).to_contain_text("Record chain verified (1 records)")
    expect(page.get_by_role("table").first).to_contain_text("alice")
    expect(page.locator(".messages")).to_contain_text("Payment outcome")
    page.screenshot(path=os.path.join(SHOTS, "inbox-thread.png"), full_page=True)

    # -- a phone-sized window keeps everything reachable
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    phone_page = phone.new_page()
    sign_in(phone_page, "alice")
    expect(card_of(phone_page, other)).to_be_visible()
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    check(width <= 390, f"no sideways scrolling on a phone ({width}px)")

    browser.close()

print(f"inbox.py: {checks} checks passed")
