package groups

// groupDefSchema is the JSON Schema of a group definition (GET
// /api/schemas/group-def.json), as upstream serves one for its editors'
// completion and validation; written from GroupDef and its Validate (the
// one-of-members-or-query rule is here too, blank and null counting as
// unset as Validate counts them; the query's read-only check is not).
const groupDefSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "GroupDef",
  "description": "A group definition: a static list of members, or a dynamic SQL query over the projection whose rows are pc_ids.",
  "type": "object",
  "required": ["id"],
  "oneOf": [
    {"description": "static: members, and no query (absent, null or blank)",
     "required": ["members"],
     "properties": {"members": {"type": "array", "minItems": 1}, "query": {"type": ["string", "null"], "pattern": "^\\s*$"}}},
    {"description": "dynamic: a query, and no members (absent, null or empty)",
     "required": ["query"],
     "properties": {"query": {"type": "string", "pattern": "\\S"}, "members": {"type": ["array", "null"], "maxItems": 0}}}
  ],
  "properties": {
    "id": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$", "description": "the group's name, as targets and schedules name it"},
    "description": {"type": ["string", "null"], "description": "free text for people"},
    "members": {"type": ["array", "null"], "items": {"type": "string", "pattern": "\\S"}, "description": "a static group: its pc_ids"},
    "query": {"type": ["string", "null"], "description": "a dynamic group: a read-only SELECT or WITH whose first column is pc_id"},
    "refresh": {"type": ["string", "null"], "pattern": "^\\s*$|^(\\s*[0-9]+(\\.[0-9]+)?\\s*(ns|us|µs|ms|s|sec|m|min|h)\\s*)+$",
      "description": "how long a dynamic group's resolution is reused, humantime (30s, 10m, 1h 30m); default 10m"},
    "tags": {"type": ["array", "null"], "items": {"type": "string", "pattern": "\\S"}, "description": "labels for people"},
    "origin": {
      "anyOf": [{"$ref": "#/$defs/Origin"}, {"type": "null"}],
      "description": "where the definition came from (a file in a repository)"
    }
  },
  "additionalProperties": false,
  "$defs": {
    "Origin": {
      "type": "object",
      "required": ["path"],
      "properties": {
        "path": {"type": "string"},
        "repo": {"type": ["string", "null"]},
        "script_file": {"type": ["string", "null"]}
      },
      "additionalProperties": false
    }
  }
}`
