package scheduler

// scheduleSchema is the JSON Schema of a schedule (GET
// /api/schemas/schedule.json), upstream's model: editors validate YAML
// against it. The cron extension form is listed beside when.
const scheduleSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Schedule",
  "type": "object",
  "required": ["id", "job_id"],
  "oneOf": [{"required": ["when"]}, {"required": ["cron"]}],
  "properties": {
    "id": {"type": "string"},
    "when": {"$ref": "#/definitions/When"},
    "cron": {"type": "string", "description": "this backend's extension: a cron expression (5 or 6 fields, or @every); tz may then be an IANA name"},
    "job_id": {"type": "string"},
    "target": {
      "type": "object",
      "properties": {
        "groups": {"type": "array", "items": {"type": "string"}, "default": []},
        "pcs": {"type": "array", "items": {"type": "string"}, "default": []},
        "all": {"type": "boolean", "default": false}
      },
      "additionalProperties": false
    },
    "rollout": {
      "type": "object",
      "properties": {
        "strategy": {"type": "string", "enum": ["wave"], "default": "wave"},
        "waves": {"type": "array", "items": {"type": "object", "required": ["group", "delay"],
          "properties": {"group": {"type": "string"}, "delay": {"type": "string"}}, "additionalProperties": false}}
      },
      "required": ["waves"],
      "additionalProperties": false
    },
    "jitter": {"type": "string", "description": "humantime, e.g. 5m"},
    "deadline_at": {"type": "string", "format": "date-time", "description": "set by the scheduler; rejected at create"},
    "active": {"type": "object", "properties": {"from": {"type": "string"}, "until": {"type": "string"}}, "additionalProperties": false},
    "constraints": {
      "type": "object",
      "properties": {
        "window": {"type": "string", "pattern": "^\\d{1,2}:\\d{2}-\\d{1,2}:\\d{2}$"},
        "max_concurrent": {"type": "integer", "minimum": 1},
        "skip_dates": {"type": "array", "items": {"type": "string", "format": "date"}},
        "require": {"type": "object", "properties": {
          "ac_power": {"type": "boolean"}, "idle": {"type": "string"},
          "cpu_below": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}, "network": {"type": "boolean"}},
          "additionalProperties": false}
      },
      "additionalProperties": false
    },
    "on_failure": {"type": "object", "properties": {"retry": {"type": "object", "required": ["max", "backoff"],
      "properties": {"max": {"type": "integer", "minimum": 1, "maximum": 10}, "backoff": {"type": "string"}}, "additionalProperties": false}},
      "additionalProperties": false},
    "tz": {"type": "string", "enum": ["local", "utc"], "default": "local"},
    "starting_deadline": {"type": "string"},
    "runs_on": {"type": "string", "enum": ["backend", "agent"], "default": "backend"},
    "enabled": {"type": "boolean", "default": true},
    "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
    "origin": {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}, "repo": {"type": "string"}, "script_file": {"type": "string"}}}
  },
  "definitions": {
    "Per": {"oneOf": [{"type": "string", "enum": ["once", "once_per_version"]},
      {"type": "object", "required": ["every"], "properties": {"every": {"type": "string"}}, "additionalProperties": false}]},
    "When": {"oneOf": [
      {"type": "object", "required": ["per_pc"], "properties": {"per_pc": {"$ref": "#/definitions/Per"}}, "additionalProperties": false},
      {"type": "object", "required": ["per_target"], "properties": {"per_target": {"$ref": "#/definitions/Per"}}, "additionalProperties": false},
      {"type": "object", "required": ["calendar"], "properties": {"calendar": {"type": "object", "required": ["at"],
        "properties": {"at": {"type": "string"}, "days": {"type": "array", "items": {"type": "string"}}}, "additionalProperties": false}},
        "additionalProperties": false},
      {"type": "object", "required": ["on"], "properties": {"on": {"type": "array", "items": {"type": "string",
        "enum": ["startup", "logon", "lock", "unlock", "network_change"]}}}, "additionalProperties": false}
    ]}
  }
}`
