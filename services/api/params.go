package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
)

// Decode decodes a JSON request object into v. An empty body leaves v's
// defaults. Keys v does not know are ignored, as upstream (serde) ignores
// them: a cache-buster "?_=123" or a newer client's option must not fail the
// request. A known key of the wrong type is a 400 naming the parameter, and
// so is a body that is JSON but not an object (null, [1]).
//
// Handlers should prefer Params, which also reads the parameters the
// gateway sends in headers and logs ignored keys at debug level.
func Decode(data []byte, v any) error { return decode(slog.Default(), data, v) }

// Params decodes a request's parameters into v. A request without
// ParamHeaderPrefix headers is its JSON body (Decode). With them, the
// gateway passed the client's body through untouched: the body is decoded
// too when it is JSON (an exec target), not when it is a document for the
// handler to read (a YAML manifest), and the header parameters come last
// and win, since the path names the resource. A header value is a string,
// or a number for the endpoint's IntParams ("Kanade-Param-limit: 20"), as
// the gateway sends them in a body it builds.
func Params(r Request, v any) error {
	log := r.log
	if log == nil {
		log = slog.Default()
	}
	hdr := paramHeaders(r.Header)
	if len(hdr) == 0 {
		return decode(log, r.Data, v)
	}
	body := bytes.TrimSpace(r.Data)
	if len(body) > 0 && (body[0] == '{' || json.Valid(body)) {
		if err := decode(log, body, v); err != nil {
			return err
		}
	}
	obj := make(map[string]json.RawMessage, len(hdr))
	for k, val := range hdr {
		if slices.Contains(r.ints, k) && json.Valid([]byte(val)) {
			obj[k] = json.RawMessage(val)
		} else {
			// Not a number: as a string, which an integer field refuses
			// with a 400 naming the parameter.
			obj[k], _ = json.Marshal(val)
		}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	if err := decodeObject(b, v); err != nil {
		return requestError(err)
	}
	logUnknown(log, b, v)
	return nil
}

// paramHeaders collects the ParamHeaderPrefix headers by parameter name.
// NATS headers keep their case; the prefix is matched without it.
func paramHeaders(h map[string][]string) map[string]string {
	var out map[string]string
	n := len(ParamHeaderPrefix)
	for k, vals := range h {
		if len(vals) == 0 || len(k) <= n || !strings.EqualFold(k[:n], ParamHeaderPrefix) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k[n:]] = vals[0]
	}
	return out
}

func decode(log *slog.Logger, data []byte, v any) error {
	b := bytes.TrimSpace(data)
	if len(b) == 0 {
		return nil
	}
	if b[0] != '{' && json.Valid(b) {
		return BadRequest("request body: must be a JSON object of parameters")
	}
	if err := decodeObject(b, v); err != nil {
		return requestError(err)
	}
	logUnknown(log, b, v)
	return nil
}

var errMore = errors.New("one JSON object expected")

// decodeObject decodes exactly one JSON value from b into v.
func decodeObject(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errMore
	}
	return nil
}

// requestError turns a decoding error into its 400.
func requestError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return TypeError("parameter", te)
	case errors.As(err, &se):
		return BadRequest("request body is not valid JSON: %v", err)
	default:
		return BadRequest("request body: %v", err)
	}
}

// logUnknown logs, at debug level, the top-level keys of the object b that
// v has no field for. It costs a decode per key, so it only runs when debug
// logging is on.
func logUnknown(log *slog.Logger, b []byte, v any) {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil {
		return
	}
	var unknown []string
	for k := range obj {
		probe, _ := json.Marshal(map[string]any{k: nil})
		dec := json.NewDecoder(bytes.NewReader(probe))
		dec.DisallowUnknownFields()
		if err := dec.Decode(reflect.New(t.Elem()).Interface()); err != nil && strings.HasPrefix(err.Error(), "json: unknown field ") {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		log.Debug("unknown parameters ignored", "params", unknown)
	}
}

// TypeError is the 400 for a JSON value of the wrong type: "<what> limit:
// must be an integer".
func TypeError(what string, te *json.UnmarshalTypeError) error {
	return BadRequest("%s %s: must be %s", what, te.Field, kind(te.Type.Kind().String()))
}

func kind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"):
		return "an integer"
	case k == "string":
		return "a string"
	case k == "bool":
		return "true or false"
	case k == "struct", k == "map":
		return "an object"
	case k == "slice":
		return "a list"
	}
	return "a " + k
}
