"""A PostHog-shaped REST API for migrator3000's tests: one process is one instance with
one project, its objects in a real SQLite store. It follows PostHog's API as API.md
(beside this file) writes it down, each fact with the PostHog source it comes from:
both URL forms (or only one, --forms), pagination with `next`, personal API key auth,
the personal-API rate limit (429 with Retry-After), error bodies with type/code/detail/
attr, the validation the copied kinds meet, static cohort upload as a CSV, and the usage
dashboard a flag's create makes unless told not to.

    python server.py --db FILE --project N --key KEY [--seed source|destination]
                     [--forms both|projects|environments] [--burst N --window SECONDS]
                     [--write-delay SECONDS] [--id-start N]

It prints "READY <url>" once it listens. For the tests: POST /_test/faults queues
answers for the next API requests ({"status": 429, "retry_after": 1} or
{"status": 502, "html": true}, or for one method only {"method": "POST", "status": 400,
"body": {...}}); GET /_test/requests counts the requests answered by
method.
"""

import argparse
import csv
import io
import json
import re
import sqlite3
import threading
import time
import uuid
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

parser = argparse.ArgumentParser()
parser.add_argument("--db", required=True)
parser.add_argument("--project", type=int, required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--seed", choices=["source", "destination", "none"], default="none")
parser.add_argument("--forms", choices=["both", "projects", "environments"], default="both")
# Kinds this instance serves only under /api/projects/, whatever --forms says of the
# rest (routing.py registers some viewsets under projects alone).
parser.add_argument("--projects-only", default="")
parser.add_argument("--burst", type=int, default=480)
parser.add_argument("--window", type=float, default=60.0)
parser.add_argument("--write-delay", type=float, default=0.0)
parser.add_argument("--id-start", type=int, default=1)
parser.add_argument("--port", type=int, default=0)
# PostHog's pages are of 100 (1,000 for annotations); a test may make them smaller.
parser.add_argument("--page", type=int, default=0)
# Seed the source's insights, dashboards, annotations, experiments and surveys too.
parser.add_argument("--seed-kinds", action="store_true")
args = parser.parse_args()

lock = threading.RLock()
db = sqlite3.connect(args.db, check_same_thread=False)
db.execute("PRAGMA journal_mode = WAL")
db.executescript(
    """
CREATE TABLE IF NOT EXISTS objects (kind TEXT, id INTEGER, body TEXT, deleted INTEGER DEFAULT 0,
    created_at REAL, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS persons (uuid TEXT PRIMARY KEY, distinct_ids TEXT);
CREATE TABLE IF NOT EXISTS cohort_people (cohort_id INTEGER, person_uuid TEXT, PRIMARY KEY (cohort_id, person_uuid));
"""
)
faults = []
requests_by_method = {}
recent = []  # times of recent API requests (the throttle's window)
PAGE = {"actions": None, "cohorts": 100, "feature_flags": 100, "dashboards": 100, "annotations": 1000,
        "insights": 100, "experiments": 100, "surveys": 100}
# Kinds PostHog serves under both forms, or only under /api/projects/ (routing.py).
KINDS = ["actions", "cohorts", "feature_flags", "dashboards", "annotations", "insights", "experiments", "surveys"]


def now():
    return time.time()


def next_id(kind):
    row = db.execute("SELECT max(id) FROM objects WHERE kind = ?", (kind,)).fetchone()
    return max(row[0] + 1 if row[0] else 0, args.id_start)


def insert(kind, body, deleted=False):
    oid = next_id(kind)
    body = dict(body, id=oid, deleted=deleted)
    db.execute("INSERT INTO objects VALUES (?, ?, ?, ?, ?)", (kind, oid, json.dumps(body), int(deleted), now() + oid * 1e-6))
    return body


def load(kind, oid):
    row = db.execute("SELECT body FROM objects WHERE kind = ? AND id = ?", (kind, oid)).fetchone()
    return json.loads(row[0]) if row else None


def save(kind, body):
    db.execute("UPDATE objects SET body = ?, deleted = ? WHERE kind = ? AND id = ?",
               (json.dumps(body), int(bool(body.get("deleted"))), kind, body["id"]))


def live(kind):
    rows = db.execute("SELECT body FROM objects WHERE kind = ? AND deleted = 0 ORDER BY created_at DESC", (kind,))
    return [json.loads(r[0]) for r in rows]


class Refused(Exception):
    def __init__(self, status, detail, code="invalid_input", attr=None, kind="validation_error"):
        self.status, self.body = status, {"type": kind, "code": code, "detail": detail, "attr": attr}


# -- validation, as PostHog's serializers do it ------------------------------------------


def properties_of(tree):
    """Every property of a filter tree (groups of AND/OR, or lists)."""
    if isinstance(tree, list):
        for item in tree:
            yield from properties_of(item)
    elif isinstance(tree, dict):
        if tree.get("type") in ("AND", "OR") and isinstance(tree.get("values"), list):
            yield from properties_of(tree["values"])
        elif "type" in tree:
            yield tree


def cohort_is_behavioural(cohort, seen=None):
    seen = seen or set()
    for prop in properties_of((cohort.get("filters") or {}).get("properties")):
        if prop.get("type") == "behavioral":
            return True
        if prop.get("type") == "cohort" and prop.get("value") not in seen:
            seen.add(prop.get("value"))
            inner = load("cohorts", int(prop["value"]))
            if inner and cohort_is_behavioural(inner, seen):
                return True
    return False


def validate_action(body, instance=None):
    name = body.get("name", instance and instance.get("name"))
    if not name:
        raise Refused(400, "This field may not be blank.", "blank", "name")
    for other in live("actions"):
        if other["name"] == name and (not instance or other["id"] != instance["id"]):
            raise Refused(400, f"This project already has an action with this name, ID {other['id']}", "unique", "name")
    for step in body.get("steps") or []:
        for prop in properties_of(step.get("properties")):
            if prop.get("type") == "cohort" and not load("cohorts", int(prop["value"])):
                raise Refused(400, f"Cohort with id {prop['value']} does not exist", "cohort_does_not_exist", "steps")


def validate_cohort(body):
    if body.get("is_static"):
        return
    filters = body.get("filters")
    if filters is None:
        return
    if not isinstance(filters, dict) or "properties" not in filters:
        raise Refused(400, "Must contain a 'properties' key with type and values", "invalid_input", "filters")
    for prop in properties_of(filters["properties"]):
        if prop.get("type") == "cohort" and not load("cohorts", int(prop["value"])):
            raise Refused(400, f"Cohort with id {prop['value']} does not exist", "cohort_does_not_exist", "filters")
        if prop.get("type") == "behavioral" and prop.get("event_type") == "actions" and not load("actions", int(prop["key"])):
            raise Refused(400, f"Action with id {prop['key']} does not exist", "invalid_input", "filters")


def validate_flag(body, instance=None):
    key = body.get("key", instance and instance.get("key"))
    if not key or not re.fullmatch(r"[a-zA-Z0-9_-]+", key):
        raise Refused(400, "Only letters, numbers, hyphens (-) & underscores (_) are allowed.", "invalid_key", "key")
    for other in live("feature_flags"):
        if other["key"] == key and (not instance or other["id"] != instance["id"]):
            raise Refused(400, "There is already a feature flag with this key.", "unique", "key")
    filters = body.get("filters", instance and instance.get("filters")) or {}
    variants = ((filters.get("multivariate") or {}).get("variants")) or []
    if variants and sum(v.get("rollout_percentage", 0) for v in variants) != 100:
        raise Refused(400, "Invalid variant definitions: Variant rollout percentages must sum to 100.", "invalid_input", "filters")
    for group in filters.get("groups") or []:
        for prop in properties_of(group.get("properties")):
            if prop.get("type") == "cohort":
                cohort = load("cohorts", int(prop["value"]))
                if not cohort or cohort.get("deleted"):
                    raise Refused(400, f"Cohort with id {prop['value']} does not exist", "cohort_does_not_exist", "filters")
                if cohort_is_behavioural(cohort):
                    raise Refused(400, f"Cohort '{cohort['name']}' with filters on events cannot be used in feature flags.",
                                  "behavioral_cohort_found", "filters")
            if prop.get("type") == "flag" and not load("feature_flags", int(prop["key"])):
                raise Refused(400, f"Flag dependency references non-existent flag with ID {prop['key']}", "invalid_input", "filters")


def normal_flag_filters(filters):
    # PostHog's answer always has these parts.
    filters = dict(filters or {})
    filters.setdefault("groups", [])
    filters.setdefault("payloads", {})
    filters.setdefault("multivariate", None)
    return filters


# -- objects ------------------------------------------------------------------------------


def upload_members(cohort_id, text):
    rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0].strip()]
    if not rows:
        raise Refused(400, "CSV file is empty. Please upload a CSV file with at least one row.", "invalid_input", "csv")
    ids = [r[0].strip() for r in rows]
    persons = db.execute("SELECT uuid, distinct_ids FROM persons").fetchall()
    for uuid, distinct_ids in persons:
        if set(json.loads(distinct_ids)) & set(ids):
            db.execute("INSERT OR IGNORE INTO cohort_people VALUES (?, ?)", (cohort_id, uuid))


def create(kind, body, files):
    if kind == "actions":
        validate_action(body)
        steps = [dict(s) for s in body.get("steps") or []]
        return insert("actions", {"name": body["name"], "description": body.get("description", ""),
                                  "steps": steps, "post_to_slack": body.get("post_to_slack", False),
                                  "slack_message_format": body.get("slack_message_format", ""), "tags": []})
    if kind == "cohorts":
        is_static = body.get("is_static") in (True, "true", "True")
        body = dict(body, is_static=is_static)
        validate_cohort(body)
        cohort = insert("cohorts", {"name": body.get("name"), "description": body.get("description", ""),
                                    "filters": None if is_static else body.get("filters"), "groups": body.get("groups") or [],
                                    "is_static": is_static, "count": 0, "is_calculating": False})
        if is_static and "csv" in files:
            upload_members(cohort["id"], files["csv"])
        return cohort
    if kind == "feature_flags":
        validate_flag(body)
        flag = insert("feature_flags", {"key": body["key"], "name": body.get("name", ""),
                                        "filters": normal_flag_filters(body.get("filters")),
                                        "active": body.get("active", True),
                                        "ensure_experience_continuity": body.get("ensure_experience_continuity", False),
                                        "usage_dashboard": None})
        if body.get("_should_create_usage_dashboard", True) is not False:
            dashboard = insert("dashboards", {"name": f"Generated Dashboard: {flag['key']} Usage", "tiles": []})
            flag["usage_dashboard"] = dashboard["id"]
            save("feature_flags", flag)
        return flag
    if kind in MORE:
        return MORE[kind][0](body)
    raise Refused(405, 'Method "POST" not allowed.', "method_not_allowed", None, "invalid_request")


def update(kind, oid, body, files):
    instance = load(kind, oid)
    if not instance or instance.get("deleted"):
        raise Refused(404, "Not found.", "not_found", None, "invalid_request")
    if kind == "actions":
        validate_action(body, instance)
    elif kind == "cohorts":
        if "is_static" in body:
            body["is_static"] = body["is_static"] in (True, "true", "True")
        validate_cohort(dict(instance, **body))
        if instance.get("is_static") and "csv" in files:
            upload_members(oid, files["csv"])
    elif kind == "feature_flags":
        validate_flag(body, instance)
        if "filters" in body:
            body["filters"] = normal_flag_filters(body["filters"])
    elif kind in MORE:
        body = MORE[kind][1](instance, body)
    for field, value in body.items():
        if not field.startswith("_") and field not in ("id", "csv"):
            instance[field] = value
    save(kind, instance)
    return instance

# -- insights, dashboards (and their tiles), annotations, experiments, surveys -------------


def missing(kind, oid):
    found = load(kind, int(oid)) if id_like(oid) else None
    return not found or found.get("deleted")


def id_like(value):
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit())


def tiles_of(dashboard_id):
    return [t for t in live("tiles") if t["dashboard"] == dashboard_id]


def insight_dashboards(insight_id):
    return sorted(t["dashboard"] for t in live("tiles")
                  if t.get("insight") == insight_id and not missing("dashboards", t["dashboard"]))


def set_insight_dashboards(insight_id, ids):
    # InsightSerializer's `dashboards`: a tile for each dashboard named, the others' tiles deleted.
    for dashboard in ids:
        if missing("dashboards", dashboard):
            raise Refused(400, f"Dashboard {dashboard} not found", "invalid_input", "dashboards")
    have = {t["dashboard"]: t for t in live("tiles") if t.get("insight") == insight_id}
    for dashboard in ids:
        if int(dashboard) not in have:
            insert("tiles", {"dashboard": int(dashboard), "insight": insight_id, "text": None,
                             "layouts": {}, "color": None})
    for dashboard, tile in have.items():
        if dashboard not in [int(d) for d in ids]:
            save("tiles", dict(tile, deleted=True))


def create_dashboard(body):
    filters = body.get("filters") or {}
    if not isinstance(filters, dict):
        raise Refused(400, "Filters must be a dictionary", "invalid_input", "filters")
    # `tiles` is read-only on the dashboard: a create makes none.
    return insert("dashboards", {"name": body.get("name"), "description": body.get("description", ""),
                                 "pinned": body.get("pinned", False), "filters": filters,
                                 "tags": body.get("tags") or [], "creation_mode": "default"})


def update_dashboard(instance, body):
    if "filters" in body and not isinstance(body["filters"], dict):
        raise Refused(400, "Filters must be a dictionary", "invalid_input", "filters")
    for tile in body.pop("tiles", None) or []:
        shown = {k: tile[k] for k in ("layouts", "color", "deleted") if k in tile}
        if tile.get("text"):
            if tile.get("id"):
                old = load("tiles", int(tile["id"]))
                if not old or old["dashboard"] != instance["id"]:
                    raise Refused(400, "Text tile not found.", "invalid_input", "text")
                save("tiles", dict(old, text={"id": old["id"], "body": tile["text"].get("body")}, **shown))
            else:
                made = insert("tiles", dict({"dashboard": instance["id"], "insight": None, "layouts": {},
                                             "color": None}, **shown))
                save("tiles", dict(made, text={"id": made["id"], "body": tile["text"].get("body")}))
        elif tile.get("id") and shown:
            # PostHog never changes an insight tile's insight here, only how it is shown.
            old = load("tiles", int(tile["id"]))
            if old and old["dashboard"] == instance["id"]:
                save("tiles", dict(old, **shown))
    return body


def create_insight(body):
    ids = body.get("dashboards") or []
    insight = insert("insights", {"name": body.get("name"), "description": body.get("description", ""),
                                  "query": body.get("query"), "filters": body.get("filters") or {},
                                  "favorited": body.get("favorited", False), "saved": True,
                                  "short_id": f"s{now():.6f}"[-8:].replace(".", "x")})
    set_insight_dashboards(insight["id"], ids)
    return insight


def update_insight(instance, body):
    if "dashboards" in body:
        set_insight_dashboards(instance["id"], body.pop("dashboards"))
    return body


def validate_annotation(body):
    if body.get("dashboard_item") is not None and missing("insights", body["dashboard_item"]):
        raise Refused(400, f'Invalid pk "{body["dashboard_item"]}" - object does not exist.', "does_not_exist",
                      "dashboard_item")
    if body.get("dashboard_id") is not None and missing("dashboards", body["dashboard_id"]):
        raise Refused(400, f'Invalid pk "{body["dashboard_id"]}" - object does not exist.', "does_not_exist",
                      "dashboard_id")


def create_annotation(body):
    validate_annotation(body)
    return insert("annotations", {k: body.get(k, d) for k, d in (
        ("content", ""), ("date_marker", None), ("creation_type", "USR"), ("scope", "project"),
        ("dashboard_item", None), ("dashboard_id", None))})


def update_annotation(instance, body):
    validate_annotation(dict(instance, **body))
    return body


def flag_by_key(key):
    return next((f for f in live("feature_flags") if f["key"] == key), None)


def create_experiment(body):
    key = body.get("feature_flag_key")
    if not body.get("name"):
        raise Refused(400, "This field is required.", "required", "name")
    if not key:
        raise Refused(400, "This field is required.", "required", "feature_flag_key")
    variants = ((body.get("parameters") or {}).get("feature_flag_variants")) or []
    if variants and "control" not in [v.get("key") for v in variants]:
        raise Refused(400, "Feature flag variants must contain a control variant", "invalid_input", "parameters")
    flag = flag_by_key(key)
    if flag:
        # An existing flag is used if it can run an experiment: multivariate, with a control.
        keys = [v.get("key") for v in ((flag["filters"].get("multivariate") or {}).get("variants") or [])]
        if "control" not in keys:
            raise Refused(400, "Feature flag must have a variant with key 'control' to be used in an experiment.",
                          "invalid_input", "feature_flag_key")
    else:
        flag = insert("feature_flags", {"key": key, "name": f"Feature Flag for Experiment {body['name']}",
                                        "active": body.get("start_date") is not None,
                                        "ensure_experience_continuity": False, "usage_dashboard": None,
                                        "filters": normal_flag_filters({"groups": [{"properties": [],
                                                                                    "rollout_percentage": 100}],
                                            "multivariate": {"variants": variants or [
                                                {"key": "control", "name": "Control Group", "rollout_percentage": 50},
                                                {"key": "test", "name": "Test Variant", "rollout_percentage": 50}]}})})
    fields = ("description", "start_date", "end_date", "parameters", "filters", "archived", "type", "metrics",
              "metrics_secondary")
    return insert("experiments", dict({k: body.get(k) for k in fields}, name=body["name"],
                                      archived=bool(body.get("archived")), feature_flag=flag["id"]))


def update_experiment(instance, body):
    key = body.pop("feature_flag_key", None)
    if key is not None and key != present("experiments", instance)["feature_flag_key"]:
        raise Refused(400, "Can't update keys: feature_flag_key", "invalid_input", None)
    return body


def validate_survey(body, instance=None):
    name = body.get("name")
    for other in live("surveys"):
        if other["name"] == name and (not instance or other["id"] != instance["id"]):
            raise Refused(400, "There is already a survey with this name.", "unique", None)
    if body.get("linked_flag_id") is not None and missing("feature_flags", body["linked_flag_id"]):
        raise Refused(400, "Feature Flag with this ID does not exist", "invalid_input", None)
    if body.get("linked_insight_id") is not None and missing("insights", body["linked_insight_id"]):
        raise Refused(400, "Insight with this ID does not exist", "invalid_input", None)


def survey_questions(questions):
    # A question without an id is given one; an id sent is kept (responses refer to it).
    out = []
    for question in questions or []:
        question = dict(question)
        question.setdefault("id", str(uuid.uuid4()))
        out.append(question)
    return out


def create_survey(body):
    validate_survey(body)
    fields = ("name", "description", "type", "appearance", "conditions", "start_date", "end_date",
              "responses_limit", "linked_flag_id", "linked_insight_id")
    return insert("surveys", dict({k: body.get(k) for k in fields}, archived=bool(body.get("archived")),
                                  questions=survey_questions(body.get("questions"))))


def update_survey(instance, body):
    validate_survey(dict(instance, **body), instance)
    if "questions" in body:
        body["questions"] = survey_questions(body["questions"])
    return body


MORE = {"dashboards": (create_dashboard, update_dashboard), "insights": (create_insight, update_insight),
        "annotations": (create_annotation, update_annotation),
        "experiments": (create_experiment, update_experiment), "surveys": (create_survey, update_survey)}


def present(kind, obj):
    """An object as its serializer answers it."""
    if kind == "insights":
        return dict(obj, dashboards=insight_dashboards(obj["id"]))
    if kind == "experiments":
        flag = load("feature_flags", obj["feature_flag"])
        return dict(obj, feature_flag_key=flag["key"],
                    feature_flag={"id": flag["id"], "key": flag["key"], "name": flag["name"]})
    return obj


def listed(kind, query):
    items = [present(kind, o) for o in live(kind)]
    if kind == "dashboards":
        # The list is DashboardBasicSerializer's: no filters, no tiles.
        return [{k: v for k, v in o.items() if k not in ("filters", "tiles")} for o in items]
    if kind == "experiments":
        # Archived experiments are left out unless `archived=true` asks for them (then only they).
        wanted = query.get("archived", ["false"])[0].lower() == "true"
        return [o for o in items if bool(o.get("archived")) == wanted]
    return items


def detail(kind, obj):
    obj = present(kind, obj)
    if kind == "dashboards":
        tiles = []
        for tile in tiles_of(obj["id"]):
            insight = load("insights", tile["insight"]) if tile.get("insight") else None
            if insight and insight.get("deleted"):
                continue
            tiles.append({"id": tile["id"], "layouts": tile["layouts"], "color": tile["color"],
                          "insight": present("insights", insight) if insight else None, "text": tile.get("text")})
        obj = dict(obj, tiles=tiles)
    return obj


def seed_kinds():
    actions = db.execute("SELECT body FROM objects WHERE kind = 'actions' ORDER BY id").fetchall()
    actions = [json.loads(a[0]) for a in actions]
    cohorts = {c["name"]: c for c in (json.loads(r[0]) for r in db.execute(
        "SELECT body FROM objects WHERE kind = 'cohorts' ORDER BY id"))}
    flags = {f["key"]: f for f in (json.loads(r[0]) for r in db.execute(
        "SELECT body FROM objects WHERE kind = 'feature_flags' ORDER BY id"))}
    live_actions = [a for a in actions if not a["deleted"]]
    deleted_action = next(a for a in actions if a["deleted"])
    boards = [insert("dashboards", {"name": f"Growth {n}", "description": f"Board {n}", "pinned": n == 0,
                                    "filters": {"date_from": "-30d"} if n % 2 else {}, "tags": [],
                                    "creation_mode": "default"}) for n in range(6)]
    old_board = insert("dashboards", {"name": "Old board", "description": "", "pinned": False, "filters": {},
                                      "tags": [], "creation_mode": "default"}, deleted=True)
    insights = []
    for n in range(24):
        action = live_actions[n % len(live_actions)]
        cohort = cohorts[f"Customers {n % 8}"]
        if n % 3 == 2:  # a legacy insight: `filters` only
            query, filters = None, {"insight": "TRENDS", "actions": [{"id": action["id"], "type": "actions",
                                                                      "order": 0}],
                                    "events": [{"id": "$pageview", "type": "events", "order": 1}],
                                    "properties": [{"key": "id", "type": "cohort", "value": cohort["id"]}]}
        else:
            source = {"kind": "TrendsQuery", "series": [{"kind": "ActionsNode", "id": action["id"], "name": action["name"]},
                                                       {"kind": "EventsNode", "event": "$pageview"}],
                      "properties": {"type": "AND", "values": [{"type": "AND", "values": [
                          {"key": "id", "type": "cohort", "value": cohort["id"], "operator": "in"}]}]}}
            if n % 4 == 0:
                source["breakdownFilter"] = {"breakdown_type": "cohort",
                                             "breakdown": [cohorts["Customers 1"]["id"], "all"]}
            query, filters = {"kind": "InsightVizNode", "source": source}, {}
        insight = insert("insights", {"name": f"Pricing trend {n}", "description": "", "query": query,
                                      "filters": filters, "favorited": n % 5 == 0, "saved": True,
                                      "short_id": f"ab{n:04d}"}, deleted=n == 23)
        insights.append(insight)
        for b in ([boards[n % 6]] + ([boards[(n + 1) % 6]] if n % 7 == 0 else [])):
            insert("tiles", {"dashboard": b["id"], "insight": insight["id"], "text": None, "color": ["blue", None][n % 2],
                             "layouts": {"sm": {"h": 5, "w": 6, "x": (n % 2) * 6, "y": n * 5, "minH": 5, "minW": 3}}})
    insert("insights", {"name": "Uses a deleted action", "description": "", "filters": {}, "favorited": False,
                        "query": {"kind": "InsightVizNode", "source": {"kind": "TrendsQuery", "series": [
                            {"kind": "ActionsNode", "id": deleted_action["id"]}]}}, "saved": True, "short_id": "dead01"})
    for n, b in enumerate(boards[:4]):
        made = insert("tiles", {"dashboard": b["id"], "insight": None, "color": None,
                                "layouts": {"sm": {"h": 2, "w": 12, "x": 0, "y": 200 + n}}})
        save("tiles", dict(made, text={"id": made["id"], "body": f"## Notes for board {n}\nRead me first."}))
    for n in range(30):
        scope, item, board = "project", None, None
        if n % 6 == 1:
            scope, item = "dashboard_item", insights[n % 20]["id"]
        elif n % 6 == 4:
            scope, board = "dashboard", boards[n % 6]["id"]
        insert("annotations", {"content": f"Release {n}", "date_marker": f"2024-0{1 + n % 9}-1{n % 10}T10:00:00Z",
                               "creation_type": "USR", "scope": scope, "dashboard_item": item,
                               "dashboard_id": board}, deleted=n == 29)
    insert("annotations", {"content": "On a deleted insight", "date_marker": "2024-05-05T00:00:00Z",
                           "creation_type": "USR", "scope": "dashboard_item", "dashboard_item": insights[23]["id"],
                           "dashboard_id": None})
    for n, key in enumerate(["flag-3", "flag-9", "flag-15", "flag-21", "flag-33", "flag-27"]):
        insert("experiments", {"name": f"Pricing test {n}", "description": "", "feature_flag": flags[key]["id"],
                               "start_date": "2024-03-01T00:00:00Z" if n % 2 else None, "end_date": None,
                               "parameters": {"feature_flag_variants": [
                                   {"key": "control", "rollout_percentage": 50},
                                   {"key": "test", "rollout_percentage": 50}]},
                               "filters": {}, "archived": n in (1, 4), "type": "product",
                               "metrics": [{"kind": "ExperimentMetric", "metric_type": "mean",
                                            "source": {"kind": "EventsNode", "event": "purchase"}}],
                               "metrics_secondary": []})
    for n in range(6):
        questions = [{"id": f"0190d000-0000-7000-8000-0000000000{n}{q}", "type": "open" if q else "rating",
                      "question": f"Question {q} of survey {n}", "scale": 10 if not q else None} for q in range(2)]
        insert("surveys", {"name": f"NPS {n}", "description": "", "type": "popover", "questions": questions,
                           "appearance": {"backgroundColor": "#eeeded"}, "conditions": {"url": "pricing"},
                           "start_date": None, "end_date": None, "archived": n == 5, "responses_limit": None,
                           "linked_flag_id": flags[f"flag-{n}"]["id"] if n in (1, 2) else None,
                           "linked_insight_id": insights[n]["id"] if n in (3, 4) else None})
    insert("surveys", {"name": "On a deleted flag", "description": "", "type": "popover", "questions": [
        {"id": "0190d000-0000-7000-8000-0000000000ff", "type": "open", "question": "Why?"}], "appearance": {},
        "conditions": None, "start_date": None, "end_date": None, "archived": False, "responses_limit": None,
        "linked_flag_id": flags["flag-13"]["id"], "linked_insight_id": None})
    db.commit()


def page(request_url, items, limit):
    query = parse_qs(urlparse(request_url).query)
    if limit is None:
        return {"results": items}
    limit = args.page or limit
    limit = int(query.get("limit", [limit])[0])
    offset = int(query.get("offset", [0])[0])
    chunk = items[offset:offset + limit]
    base = urlparse(request_url)
    kept = "".join(f"&{k}={v[0]}" for k, v in query.items() if k not in ("limit", "offset"))
    nxt = (f"http://posthog.internal{base.path}?limit={limit}&offset={offset + limit}{kept}"
           if offset + limit < len(items) else None)
    prev = f"http://posthog.internal{base.path}?limit={limit}&offset={max(0, offset - limit)}{kept}" if offset else None
    return {"count": len(items), "next": nxt, "previous": prev, "results": chunk}


ROUTE = re.compile(r"^/api/(projects|environments)/(\d+)/([a-z_]+)/(?:(\d+)/)?(?:([a-z_]+)/)?$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body, headers=(), html=False):
        data = body.encode() if html else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if html else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            message = BytesParser(policy=email_policy).parsebytes(
                b"Content-Type: " + kind.encode() + b"\r\n\r\n" + raw)
            fields, files = {}, {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename():
                    files[name] = part.get_payload(decode=True).decode()
                else:
                    fields[name] = part.get_payload(decode=True).decode()
            return fields, files
        return (json.loads(raw) if raw else {}), {}

    def handle_any(self, method):
        url = urlparse(self.path)
        if url.path == "/_test/faults" and method == "POST":
            faults.extend(self.body()[0])
            return self.send(200, {"queued": len(faults)})
        if url.path == "/_test/requests":
            return self.send(200, requests_by_method)
        # Read whole before any answer, so that the connection stays usable.
        payload = self.body() if method in ("POST", "PATCH") else ({}, {})
        with lock:
            requests_by_method[method] = requests_by_method.get(method, 0) + 1
            fault = next((f for f in faults if f.get("method", method) == method), None)
            if fault:
                faults.remove(fault)
                if "body" in fault:
                    return self.send(fault["status"], fault["body"])
                if fault.get("html"):
                    return self.send(fault["status"], "<html><body><h1>502 Bad Gateway</h1></body></html>", html=True)
                return self.send(fault["status"], {"type": "throttled_error", "code": "throttled",
                                                   "detail": "Request was throttled.", "attr": None},
                                 [("Retry-After", str(fault.get("retry_after", 1)))])
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {args.key}":
                return self.send(401, {"type": "authentication_error", "code": "authentication_failed",
                                       "detail": "Personal API key found in request Authorization header is invalid.",
                                       "attr": None})
            # PersonalApiKeyRateThrottle: a burst per window, per key.
            t = now()
            recent[:] = [r for r in recent if t - r < args.window]
            if len(recent) >= args.burst:
                wait = max(1, int(args.window - (t - recent[0]) + 0.999))
                return self.send(429, {"type": "throttled_error", "code": "throttled",
                                       "detail": f"Request was throttled. Expected available in {wait} seconds.",
                                       "attr": None}, [("Retry-After", str(wait))])
            recent.append(t)
            match = ROUTE.match(url.path)
            projects_only = match is not None and match.group(3) in args.projects_only.split(",")
            form_of_kind = "projects" if projects_only else args.forms
            if not match or (form_of_kind != "both" and match.group(1) != form_of_kind):
                return self.send(404, "<!doctype html><title>Not Found</title><h1>Not Found</h1>", html=True)
            form, project, kind, oid, action = match.groups()
            if int(project) != args.project:
                return self.send(403, {"type": "authentication_error", "code": "permission_denied",
                                       "detail": "You don't have access to the project.", "attr": None})
            if kind not in KINDS:
                return self.send(404, "<!doctype html><title>Not Found</title><h1>Not Found</h1>", html=True)
            try:
                if method == "GET" and oid is None:
                    return self.send(200, page(self.path, listed(kind, parse_qs(url.query)), PAGE[kind]))
                if method == "GET" and action == "persons" and kind == "cohorts":
                    people = db.execute(
                        "SELECT p.uuid, p.distinct_ids FROM cohort_people c JOIN persons p ON p.uuid = c.person_uuid "
                        "WHERE c.cohort_id = ? ORDER BY p.uuid", (int(oid),)).fetchall()
                    items = [{"uuid": u, "distinct_ids": json.loads(d)} for u, d in people]
                    return self.send(200, page(self.path, items, 100))
                if method == "GET":
                    found = load(kind, int(oid))
                    if not found or found.get("deleted"):
                        raise Refused(404, "Not found.", "not_found", None, "invalid_request")
                    return self.send(200, detail(kind, found))
                if args.write_delay:
                    time.sleep(args.write_delay)
                body, files = payload
                if method == "POST" and oid is None:
                    answer = create(kind, body, files)
                    db.commit()
                    return self.send(201, detail(kind, answer))
                if method == "PATCH" and oid and not action:
                    answer = update(kind, int(oid), body, files)
                    db.commit()
                    return self.send(200, detail(kind, answer))
                raise Refused(405, f'Method "{method}" not allowed.', "method_not_allowed", None, "invalid_request")
            except Refused as refused:
                db.rollback()
                return self.send(refused.status, refused.body)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PATCH(self):
        self.handle_any("PATCH")


# -- seeds ----------------------------------------------------------------------------------


def seed_persons(uuid_prefix):
    for n in range(60):
        ids = [f"user-{n}@example.com"] + ([f"anon-{n:04x}"] if n % 2 == 0 else [])
        db.execute("INSERT INTO persons VALUES (?, ?)", (f"{uuid_prefix}-{n:04d}", json.dumps(ids)))


def seed_source():
    seed_persons("0190a000-0000-7000-8000-00000000")
    actions = []
    for n in range(30):
        steps = [{"event": "$pageview", "url": f"https://example.com/pricing/{n}", "url_matching": "contains",
                  "properties": [], "selector": None, "tag_name": None, "text": None, "text_matching": None,
                  "href": None, "href_matching": None}]
        if n % 3 == 0:
            steps.append({"event": "$autocapture", "selector": f"button.signup-{n}", "text": "Sign up",
                          "text_matching": "exact", "tag_name": "button", "properties": [
                              {"key": "$browser", "type": "event", "value": ["Chrome"], "operator": "exact"}],
                          "url": None, "url_matching": None, "href": None, "href_matching": None})
        actions.append(insert("actions", {"name": f"Viewed pricing {n}", "description": f"Action {n}", "steps": steps,
                                          "post_to_slack": n % 7 == 0, "slack_message_format": "", "tags": []},
                              deleted=n in (4, 17, 29)))
    live_actions = [a for a in actions if not a["deleted"]]

    def person_cohort(n):
        return {"name": f"Customers {n}", "description": "", "is_static": False, "groups": [], "filters": {
            "properties": {"type": "OR", "values": [{"type": "AND", "values": [
                {"key": "email", "type": "person", "value": f"@company{n}.com", "operator": "icontains",
                 "negation": False}]}]}}}

    people = [insert("cohorts", person_cohort(n)) for n in range(8)]
    behavioural = [insert("cohorts", {"name": f"Did pricing {n}", "description": "", "is_static": False, "groups": [],
                                      "filters": {"properties": {"type": "OR", "values": [{"type": "AND", "values": [
                                          {"key": live_actions[n]["id"], "type": "behavioral",
                                           "value": "performed_event", "event_type": "actions", "time_value": 30,
                                           "time_interval": "day", "negation": False}]}]}}})
                   for n in range(5)]
    deleted_cohort = insert("cohorts", person_cohort(99), deleted=True)
    insert("cohorts", dict(person_cohort(98), name="Old customers"), deleted=True)
    nesting = []
    for n in range(4):
        inner = people[n]["id"] if n < 3 else behavioural[0]["id"]
        nesting.append(insert("cohorts", {"name": f"Customers {n} in Europe", "description": "", "is_static": False,
                                          "groups": [], "filters": {"properties": {"type": "AND", "values": [
                                              {"type": "AND", "values": [
                                                  {"key": "id", "type": "cohort", "value": inner, "negation": False},
                                                  {"key": "$geoip_continent_code", "type": "person", "value": ["EU"],
                                                   "operator": "exact", "negation": False}]}]}}}))
    insert("cohorts", {"name": "Lapsed (refers to a deleted cohort)", "description": "", "is_static": False, "groups": [],
                       "filters": {"properties": {"type": "OR", "values": [
                           {"key": "id", "type": "cohort", "value": deleted_cohort["id"], "negation": False}]}}})
    statics = []
    for n in range(5):
        statics.append(insert("cohorts", {"name": f"Beta testers {n}", "description": "uploaded", "is_static": True,
                                          "filters": None, "groups": [], "count": 0}))
        for m in range(n * 3, n * 3 + 5 + n * 2):
            db.execute("INSERT INTO cohort_people VALUES (?, ?)", (statics[-1]["id"], f"0190a000-0000-7000-8000-00000000-{m:04d}"))
    flags = []
    for n in range(40):
        groups = [{"properties": [], "rollout_percentage": (n * 7) % 100, "variant": None}]
        filters = {"groups": groups, "payloads": {}, "multivariate": None}
        if n % 4 == 1:
            groups.append({"properties": [{"key": "id", "type": "cohort", "value": people[n % 8]["id"]}],
                           "rollout_percentage": 100, "variant": None})
        if n % 5 == 2:
            groups.append({"properties": [{"key": "id", "type": "cohort", "value": statics[n % 5]["id"]}],
                           "rollout_percentage": 50, "variant": None})
        if n % 6 == 3:
            filters["multivariate"] = {"variants": [{"key": "control", "name": "Control", "rollout_percentage": 50},
                                                    {"key": "test", "name": "Test", "rollout_percentage": 50}]}
            filters["payloads"] = {"control": json.dumps({"color": "blue"}), "test": json.dumps({"color": "green"})}
        if n % 9 == 4 and flags:
            groups.append({"properties": [{"key": str(flags[-1]["id"]), "type": "flag", "value": True,
                                           "operator": "flag_evaluates_to"}], "rollout_percentage": 100})
        if n % 8 == 0:
            groups[0]["properties"] = [{"key": "email", "type": "person", "value": ["@posthog.com"], "operator": "icontains"}]
            filters["payloads"] = {"true": json.dumps({"banner": f"v{n}"})}
        flags.append(insert("feature_flags", {"key": f"flag-{n}", "name": f"Flag {n}", "filters": filters,
                                              "active": n % 10 != 9, "ensure_experience_continuity": n % 11 == 0},
                            deleted=n in (13, 27)))
    # Saved before PostHog checked: a flag on a behavioural cohort.
    insert("feature_flags", {"key": "old-behavioural-flag", "name": "Saved before the check", "active": True,
                             "ensure_experience_continuity": False,
                             "filters": {"groups": [{"properties": [{"key": "id", "type": "cohort",
                                                                     "value": behavioural[1]["id"]}],
                                                     "rollout_percentage": 100}], "payloads": {}, "multivariate": None}})
    db.commit()


def seed_destination():
    seed_persons("0190b111-0000-7000-8000-00000000")
    # Its own objects, two of them under a source object's natural key.
    insert("actions", {"name": "Viewed pricing 2", "description": "made here", "steps": [{"event": "$pageview"}],
                       "post_to_slack": False, "slack_message_format": "", "tags": []})
    insert("actions", {"name": "Destination's own action", "description": "", "steps": [{"event": "paid"}],
                       "post_to_slack": False, "slack_message_format": "", "tags": []})
    insert("feature_flags", {"key": "flag-5", "name": "Made at the destination", "active": False,
                             "ensure_experience_continuity": False,
                             "filters": {"groups": [{"properties": [], "rollout_percentage": 10}], "payloads": {},
                                         "multivariate": None}})
    insert("cohorts", {"name": "Destination's own cohort", "description": "", "is_static": False, "groups": [],
                       "filters": {"properties": {"type": "OR", "values": []}}})
    db.commit()


if db.execute("SELECT count(*) FROM objects").fetchone()[0] == 0 and db.execute("SELECT count(*) FROM persons").fetchone()[0] == 0:
    if args.seed == "source":
        seed_source()
        if args.seed_kinds:
            seed_kinds()
    elif args.seed == "destination":
        seed_destination()

server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print(f"READY http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
