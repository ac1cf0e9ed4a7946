package main

// The worked sessions of docs/protocol.md, replayed against the real fabricd
// so that the page cannot go stale unnoticed.
//
// A session is a fenced code block holding lines that start with "-->" (a
// message the client sends) and "<--" (a message the server sends); a line
// "(no reply)" says that nothing comes back. Each block is replayed on a
// fresh `fabricd serve --data :memory: --workers 2` over a WebSocket, and on
// a fresh `fabricd stdio`, top to bottom: each "-->" is sent once every "<--"
// above it has arrived. Responses are matched by id (or, for a batch, as the
// next response, its elements in any order); notifications in the order
// written, apart from responses (a notification may overtake an answer).
//
// What a real run makes differently each time is read as a placeholder
// (internal/fixture's matcher does the matching):
//   - a UUID names a generated id: the first "<--" that shows it binds it, and
//     every later line must carry the same id; a "-->" may use it only once
//     bound (a block cannot use what it did not make);
//   - a "seq" is bound the same way, and an "after_seq" sent may use it;
//   - an RFC 3339 time matches any time;
//   - measurements (usage, durations, latencies, throughput, uptime) and
//     fabricd's own version match any number or string;
//   - "text..." matches a string starting with text; ", ..." before "}"
//     allows more members, before "]" more elements; "{...}" is any object;
//   - a "wasm" module cut short with "..." is the file of
//     testdata/fixtures/agents whose base64 starts so;
//   - an agent that the block names ("agent" or "name") but does not
//     register is registered first from testdata/fixtures/agents/NAME.wasm.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chimera-fabric/fabric/internal/fabricdtest"
	"github.com/chimera-fabric/fabric/internal/fixture"
)

const (
	protocolDoc  = "../../docs/protocol.md"
	docAgentsDir = "../../testdata/fixtures/agents"
)

// docsKnownStale are the sessions of docs/protocol.md that cannot be
// replayed as written, and why. They are still run: one that replays is
// reported, so that this list only shrinks. racy ones may go either way.
var docsKnownStale = map[string]struct {
	why  string
	racy bool
}{}

// docSession is one code block of worked session.
type docSession struct {
	name  string // the heading above it, numbered when a heading has several
	line  int    // of the opening fence
	lines []docLine
}

type docLine struct {
	n    int    // line number in the page
	dir  string // "-->", "<--" or "none" for (no reply)
	text string // the message as written
}

func readDocSessions(t *testing.T) []docSession {
	t.Helper()
	b, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out     []docSession
		heading string
		count   = map[string]int{}
		cur     *docSession
	)
	for i, l := range strings.Split(string(b), "\n") {
		n := i + 1
		trim := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(trim, "```") && cur == nil:
			cur = &docSession{line: n}
		case strings.HasPrefix(trim, "```"):
			if len(cur.lines) > 0 && hasSend(cur.lines) {
				count[heading]++
				cur.name = heading
				if count[heading] > 1 {
					cur.name = fmt.Sprintf("%s#%d", heading, count[heading])
				}
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil:
			switch {
			case strings.HasPrefix(trim, "-->") || strings.HasPrefix(trim, "<--"):
				cur.lines = append(cur.lines, docLine{n: n, dir: trim[:3], text: strings.TrimSpace(trim[3:])})
			case trim == "(no reply)":
				cur.lines = append(cur.lines, docLine{n: n, dir: "none"})
			case trim == "":
			default:
				cur.lines = append(cur.lines, docLine{n: n, dir: "?", text: trim})
			}
		case strings.HasPrefix(l, "#"):
			heading = strings.Trim(strings.TrimLeft(l, "#"), " `")
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no worked sessions (code blocks with --> lines) found", protocolDoc)
	}
	return out
}

func hasSend(ls []docLine) bool {
	for _, l := range ls {
		if l.dir == "-->" {
			return true
		}
	}
	return false
}

// TestProtocolDocSessions replays every worked session of docs/protocol.md.
func TestProtocolDocSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd for each session")
	}
	sessions := readDocSessions(t)
	seen := map[string]bool{}
	for _, s := range sessions {
		seen[s.name] = true
	}
	for name := range docsKnownStale {
		if !seen[name] {
			t.Errorf("docsKnownStale names %q, which is no session of %s any more: remove it", name, protocolDoc)
		}
	}
	for _, s := range sessions {
		for _, transport := range []string{fixture.WebSocket, fixture.Stdio} {
			t.Run(s.name+"/"+transport, func(t *testing.T) {
				err := replayDocSession(t, s, transport)
				known, stale := docsKnownStale[s.name]
				switch {
				case err == nil && stale && !known.racy:
					t.Errorf("%s:%d (%s) replays now; remove it from docsKnownStale", protocolDoc, s.line, s.name)
				case err != nil && stale:
					t.Skipf("%s:%d: known not to replay: %s\n(replay: %v)", protocolDoc, s.line, known.why, err)
				case err != nil:
					t.Fatalf("%s:%d (%s): %v", protocolDoc, s.line, s.name, err)
				}
			})
		}
	}
}

// replayDocSession runs one session on a fresh fabricd over transport.
func replayDocSession(t *testing.T, s docSession, transport string) error {
	steps, prelude, err := buildDocSteps(s)
	if err != nil {
		return err
	}
	var conn fixture.Conn
	switch transport {
	case fixture.WebSocket:
		srv := fabricdtest.Start(t, "--data", ":memory:", "--workers", "2")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws, err := fixture.DialWebSocket(ctx, srv.URL, "")
		if err != nil {
			return err
		}
		defer ws.Close()
		conn = ws
	case fixture.Stdio:
		cmd := exec.Command(fabricdtest.Binary(t), "stdio", "--data", ":memory:", "--workers", "2", "--log-format", "json")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		sc := fixture.NewStreamConn(stdout, stdin, false)
		defer func() {
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Errorf("fabricd stdio: %v\n%s", err, stderr.String())
			}
			sc.Close()
		}()
		conn = sc
	}
	r := &docRunner{conn: conn, saved: map[string]any{}}
	return r.run(append(prelude, steps...))
}

// docStep is one line of a session, ready to run.
type docStep struct {
	line    int
	send    []byte // raw text to send as is
	sendVal any    // or a value to send once saved ids are substituted
	expect  any    // a response pattern (fixture placeholders, docPrefix arrays)
	notify  any    // a notification pattern
	nothing bool
}

// docPrefix is an array pattern cut short with ", ...": the received array
// must start with these elements.
type docPrefix []any

var (
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	docMeasure = map[string]bool{
		"cpu_seconds": true, "memory_peak_mb": true, "fuel_consumed": true, "duration_ms": true,
		"avg_duration_ms": true, "p50_ms": true, "p99_ms": true, "cpu_seconds_total": true, "memory_peak_mb_max": true,
		"uptime_s": true, "throughput_per_s": true, "p50": true, "p90": true, "p99": true,
	}
)

const (
	elidedMember = "\x00partial"
	elidedItem   = "\x00more"
	prefixMark   = "\x00prefix:"
)

// buildDocSteps turns a session into steps, and the registrations of the
// agents it uses without registering them.
func buildDocSteps(s docSession) (steps, prelude []docStep, err error) {
	bound := map[string]bool{}
	named, registered := map[string]bool{}, map[string]bool{}
	for _, l := range s.lines {
		where := fmt.Sprintf("%s:%d", protocolDoc, l.n)
		switch l.dir {
		case "?":
			return nil, nil, fmt.Errorf("%s: a line in a session must start with --> or <--, or be (no reply); got %q", where, l.text)
		case "none":
			steps = append(steps, docStep{line: l.n, nothing: true})
		case "-->":
			st, err := docSend(l.text, bound, named, registered)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			st.line = l.n
			steps = append(steps, st)
		case "<--":
			v, err := parseElided(l.text)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			collectNames(v, named)
			pat, err := docPattern("", v, bound)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			st := docStep{line: l.n}
			if m, ok := v.(map[string]any); ok && m["method"] != nil && m["id"] == nil {
				st.notify = pat
			} else if arr, ok := pat.([]any); ok {
				st.expect = map[string]any{"$unordered": arr}
			} else {
				st.expect = pat
			}
			steps = append(steps, st)
		}
	}
	var names []string
	for n := range named {
		if !registered[n] {
			if _, err := os.Stat(filepath.Join(docAgentsDir, n+".wasm")); err == nil {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		wasm, _ := os.ReadFile(filepath.Join(docAgentsDir, n+".wasm"))
		id := "docs-prelude-" + n
		req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "agent.register", "params": map[string]any{"name": n, "wasm": wasm}})
		prelude = append(prelude,
			docStep{send: req},
			docStep{expect: map[string]any{"jsonrpc": "2.0", "id": id, "result": map[string]any{"name": n, "$partial": true}}})
	}
	return steps, prelude, nil
}

// docSend prepares a "-->" line: sent byte for byte when it needs nothing
// substituted (malformed input included), else as a value.
func docSend(text string, bound, named, registered map[string]bool) (docStep, error) {
	if !json.Valid([]byte(text)) && !strings.Contains(text, "...") {
		return docStep{send: []byte(text)}, nil // malformed on purpose
	}
	v, err := parseElided(text)
	if err != nil {
		return docStep{}, err
	}
	collectNames(v, named)
	if m, ok := v.(map[string]any); ok && m["method"] == "agent.register" {
		if p, ok := m["params"].(map[string]any); ok {
			if n, ok := p["name"].(string); ok {
				registered[n] = true
			}
		}
	}
	changed := false
	val, err := docSendValue("", v, bound, &changed)
	if err != nil {
		return docStep{}, err
	}
	if !changed {
		return docStep{send: []byte(text)}, nil
	}
	return docStep{sendVal: val}, nil
}

func docSendValue(key string, v any, bound map[string]bool, changed *bool) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k == elidedMember {
				return nil, errors.New("a request cut short with \", ...\" cannot be sent")
			}
			var err error
			if out[k], err = docSendValue(k, e, bound, changed); err != nil {
				return nil, err
			}
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			if e == elidedItem {
				return nil, errors.New("a request cut short with \", ...\" cannot be sent")
			}
			var err error
			if out[i], err = docSendValue(key, e, bound, changed); err != nil {
				return nil, err
			}
		}
		return out, nil
	case string:
		switch {
		case strings.HasPrefix(x, prefixMark) && key == "wasm":
			*changed = true
			return docModule(strings.TrimPrefix(x, prefixMark))
		case strings.HasPrefix(x, prefixMark):
			return nil, fmt.Errorf("%s: a value cut short with ... can be sent only as a wasm module", key)
		case uuidRE.MatchString(x):
			if !bound["id:"+x] {
				return nil, fmt.Errorf("%s %s: no earlier line of this session produced it (a session must make what it uses)", key, x)
			}
			*changed = true
			return docRef{"id:" + x}, nil
		}
	case json.Number:
		if key == "after_seq" && bound["seq:"+x.String()] {
			*changed = true
			return docRef{"seq:" + x.String()}, nil
		}
	}
	return v, nil
}

// docRef is a saved value to substitute in a message to send.
type docRef struct{ name string }

// docModule returns the base64 of the one module of testdata/fixtures/agents
// whose base64 starts with prefix.
func docModule(prefix string) (string, error) {
	files, _ := filepath.Glob(filepath.Join(docAgentsDir, "*.wasm"))
	var found []string
	var b64 string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if s := base64.StdEncoding.EncodeToString(b); strings.HasPrefix(s, prefix) {
			found = append(found, filepath.Base(f))
			b64 = s
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("wasm %q...: want the one file of testdata/fixtures/agents whose base64 starts so; found %d %v", prefix, len(found), found)
	}
	return b64, nil
}

// collectNames notes the agents a message names.
func collectNames(v any, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "agent" || k == "name") {
				into[s] = true
			}
			collectNames(e, into)
		}
	case []any:
		for _, e := range x {
			collectNames(e, into)
		}
	}
}

// docPattern turns a "<--" value into a pattern for fixture.Match.
func docPattern(path string, v any, bound map[string]bool) (any, error) {
	key := path[strings.LastIndex(path, ".")+1:]
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k == elidedMember {
				out["$partial"] = true
				continue
			}
			p, err := docPattern(path+"."+k, e, bound)
			if err != nil {
				return nil, err
			}
			out[k] = p
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(x))
		for i, e := range x {
			if e == elidedItem {
				if i != len(x)-1 {
					return nil, fmt.Errorf("%s: ... must end an array", path)
				}
				return docPrefix(out), nil
			}
			p, err := docPattern(fmt.Sprintf("%s[%d]", path, i), e, bound)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	case json.Number:
		switch {
		case docMeasure[key]:
			return "$number", nil
		case key == "seq" && bound["seq:"+x.String()]:
			return "$seq:" + x.String(), nil
		case key == "seq":
			bound["seq:"+x.String()] = true
			return "$save:seq:" + x.String(), nil
		}
		return x, nil
	case string:
		switch {
		case strings.HasPrefix(x, prefixMark):
			return "$regex:^" + regexp.QuoteMeta(strings.TrimPrefix(x, prefixMark)), nil
		case uuidRE.MatchString(x) && bound["id:"+x]:
			return "$id:" + x, nil
		case uuidRE.MatchString(x):
			bound["id:"+x] = true
			return "$save:id:" + x, nil
		case path == ".result.version" || key == "x-server-version":
			return "$string", nil // fabricd's version, set at build time
		case isTime(x):
			return "$time", nil
		case strings.HasPrefix(x, "$"):
			return "$" + x, nil // a literal, not a placeholder
		}
	}
	return v, nil
}

func isTime(s string) bool {
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}

// parseElided parses a message as written in the page, with its elisions:
// outside strings, "..." becomes a marker member (in an object) or element
// (in an array); a string ending in "..." becomes a prefix marker.
func parseElided(text string) (any, error) {
	var b strings.Builder
	var stack []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '"':
			j := i + 1
			for ; j < len(text) && text[j] != '"'; j++ {
				if text[j] == '\\' {
					j++
				}
			}
			if j >= len(text) {
				return nil, fmt.Errorf("unterminated string in %q", text)
			}
			body := text[i+1 : j]
			if strings.HasSuffix(body, "...") {
				body = `\u0000prefix:` + strings.TrimSuffix(body, "...")
			}
			b.WriteString(`"` + body + `"`)
			i = j
		case c == '{' || c == '[':
			stack = append(stack, c)
			b.WriteByte(c)
		case c == '}' || c == ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			b.WriteByte(c)
		case strings.HasPrefix(text[i:], "..."):
			if len(stack) == 0 {
				return nil, fmt.Errorf("... outside an object or array in %q", text)
			}
			if stack[len(stack)-1] == '{' {
				b.WriteString(`"\u0000partial":true`)
			} else {
				b.WriteString(`"\u0000more"`)
			}
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	dec := json.NewDecoder(strings.NewReader(b.String()))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON, even read with its elisions (%v): %s", err, text)
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value on the line: %s", text)
	}
	return v, nil
}

// docRunner replays steps on a connection, as internal/fixture's runner
// does, with errors as values and prefix arrays.
type docRunner struct {
	conn          fixture.Conn
	saved         map[string]any
	responses     []any
	notifications []any
	barrier       int
}

func (r *docRunner) run(steps []docStep) error {
	for _, s := range steps {
		if err := r.step(s); err != nil {
			return fmt.Errorf("%s:%d: %w", protocolDoc, s.line, err)
		}
	}
	if len(r.responses) > 0 {
		return fmt.Errorf("at the end: responses no line shows: %v", r.responses)
	}
	return r.expectNothing()
}

func (r *docRunner) step(s docStep) error {
	switch {
	case s.send != nil:
		return r.conn.Send(s.send)
	case s.sendVal != nil:
		b, err := json.Marshal(r.substitute(s.sendVal))
		if err != nil {
			return err
		}
		return r.conn.Send(b)
	case s.nothing:
		return r.expectNothing()
	case s.notify != nil:
		for len(r.notifications) == 0 {
			if err := r.receive(); err != nil {
				return fmt.Errorf("want a notification %s: %w", show(s.notify), err)
			}
		}
		got := r.notifications[0]
		r.notifications = r.notifications[1:]
		return r.match(s.notify, got)
	default:
		return r.expect(s.expect)
	}
}

func (r *docRunner) substitute(v any) any {
	switch x := v.(type) {
	case docRef:
		return r.saved[x.name]
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = r.substitute(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.substitute(e)
		}
		return out
	}
	return v
}

func (r *docRunner) expect(pat any) error {
	var id any
	byID := false
	if m, ok := pat.(map[string]any); ok {
		if v, ok := m["id"]; ok {
			if s, isStr := v.(string); !isStr || !strings.HasPrefix(s, "$") || strings.HasPrefix(s, "$$") {
				id, byID = v, true
			}
		}
	}
	for {
		for i, got := range r.responses {
			if byID {
				m, ok := got.(map[string]any)
				if !ok || fixture.Match(id, m["id"], map[string]any{}) != nil {
					continue
				}
			}
			r.responses = append(r.responses[:i], r.responses[i+1:]...)
			return r.match(pat, got)
		}
		if err := r.receive(); err != nil {
			return fmt.Errorf("want a response %s: %w", show(pat), err)
		}
	}
}

// match cuts the received arrays the pattern shows only the start of, then
// matches with internal/fixture's matcher.
func (r *docRunner) match(pat, got any) error {
	p, g, err := cutPrefixes("$", pat, got)
	if err == nil {
		err = fixture.Match(p, g, r.saved)
	}
	if err != nil {
		return fmt.Errorf("%w\n  want %s\n  got  %s", err, show(pat), show(got))
	}
	return nil
}

func cutPrefixes(path string, pat, got any) (any, any, error) {
	switch p := pat.(type) {
	case docPrefix:
		g, ok := got.([]any)
		if !ok || len(g) < len(p) {
			return nil, nil, fmt.Errorf("%s: want an array of %d elements or more; got %s", path, len(p), show(got))
		}
		return cutPrefixes(path, []any(p), g[:len(p)])
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(p) {
			return pat, got, nil // the matcher says what differs
		}
		po, gout := make([]any, len(p)), make([]any, len(g))
		for i := range p {
			var err error
			if po[i], gout[i], err = cutPrefixes(fmt.Sprintf("%s[%d]", path, i), p[i], g[i]); err != nil {
				return nil, nil, err
			}
		}
		return po, gout, nil
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return pat, got, nil
		}
		if _, ok := p["$unordered"]; ok {
			return pat, got, nil
		}
		po, gout := map[string]any{}, map[string]any{}
		for k, v := range g {
			gout[k] = v
		}
		for k, v := range p {
			gv, present := g[k]
			if !present {
				po[k] = v
				continue
			}
			var err error
			if po[k], gout[k], err = cutPrefixes(path+"."+k, v, gv); err != nil {
				return nil, nil, err
			}
		}
		return po, gout, nil
	}
	return pat, got, nil
}

func (r *docRunner) receive() error {
	b, err := r.conn.Recv(fixture.Timeout)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("received a message that is not JSON (%v): %q", err, b)
	}
	if m, ok := v.(map[string]any); ok {
		_, hasID := m["id"]
		if _, hasMethod := m["method"]; hasMethod && !hasID {
			r.notifications = append(r.notifications, v)
			return nil
		}
	}
	r.responses = append(r.responses, v)
	return nil
}

// expectNothing checks, with a barrier request, that nothing the page does
// not show has come or is on its way; notifications may trail.
func (r *docRunner) expectNothing() error {
	if len(r.responses) > 0 {
		return fmt.Errorf("want no reply; got %s", show(r.responses))
	}
	r.barrier++
	id := fmt.Sprintf("docs-barrier-%d", r.barrier)
	if err := r.conn.Send([]byte(`{"jsonrpc":"2.0","id":"` + id + `","method":"system.health"}`)); err != nil {
		return err
	}
	for {
		if err := r.receive(); err != nil {
			return fmt.Errorf("barrier: %w", err)
		}
		if len(r.responses) == 0 {
			continue
		}
		got := r.responses[0]
		r.responses = r.responses[1:]
		if m, ok := got.(map[string]any); ok && m["id"] == id {
			return nil
		}
		return fmt.Errorf("want no reply; got %s", show(got))
	}
}

func show(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	s := strings.TrimSpace(b.String())
	if len(s) > 800 {
		s = s[:797] + "..."
	}
	return s
}

// TestDocSessionParsing checks the reading of the page's notation on lines
// written here, so that a mistake in the reader is not taken for a stale
// page.
func TestDocSessionParsing(t *testing.T) {
	v, err := parseElided(`{"a":"AGFz...","b":{...},"c":[1, ...],"d":{"x":1, ...},"e":"..."}`)
	if err != nil {
		t.Fatal(err)
	}
	pat, err := docPattern("", v, map[string]bool{})
	if err != nil {
		t.Fatal(err)
	}
	r := &docRunner{saved: map[string]any{}}
	good := `{"a":"AGFzbQ","b":{"k":[]},"c":[1,2,3],"d":{"x":1,"y":2},"e":"anything"}`
	for _, c := range []struct {
		got string
		ok  bool
	}{
		{good, true},
		{`{"a":"XGFzbQ","b":{},"c":[1],"d":{"x":1},"e":""}`, false},     // prefix
		{`{"a":"AGFz","b":[],"c":[1],"d":{"x":1},"e":""}`, false},       // any object
		{`{"a":"AGFz","b":{},"c":[2,1],"d":{"x":1},"e":""}`, false},     // array start
		{`{"a":"AGFz","b":{},"c":[],"d":{"x":1},"e":""}`, false},        // array too short
		{`{"a":"AGFz","b":{},"c":[1],"d":{"x":2},"e":""}`, false},       // shown member
		{`{"a":"AGFz","b":{},"c":[1],"d":{"x":1},"e":"","f":0}`, false}, // no more members at the top
		{`{"a":"AGFz","b":{},"c":[1],"d":{"x":1},"e":""}`, true},
	} {
		dec := json.NewDecoder(strings.NewReader(c.got))
		dec.UseNumber()
		var got any
		if err := dec.Decode(&got); err != nil {
			t.Fatal(err)
		}
		if err := r.match(pat, got); (err == nil) != c.ok {
			t.Errorf("%s: match error %v, want ok=%v", c.got, err, c.ok)
		}
	}

	// Generated values: ids bind, times and measurements match any.
	bound := map[string]bool{}
	id := uuid.NewString()
	first, _ := docPattern("", map[string]any{"task_id": id, "at": "2026-11-25T23:32:38.381Z", "duration_ms": json.Number("0.2"), "seq": json.Number("4")}, bound)
	again, _ := docPattern("", map[string]any{"task_id": id, "seq": json.Number("4")}, bound)
	saved := map[string]any{}
	if err := fixture.Match(first, map[string]any{"task_id": "t-1", "at": "2000-01-01T00:00:00Z", "duration_ms": json.Number("9"), "seq": json.Number("1")}, saved); err != nil {
		t.Fatal(err)
	}
	if err := fixture.Match(again, map[string]any{"task_id": "t-2", "seq": json.Number("1")}, saved); err == nil {
		t.Error("a bound id matched another id")
	}
	if err := fixture.Match(again, map[string]any{"task_id": "t-1", "seq": json.Number("1")}, saved); err != nil {
		t.Errorf("a bound id: %v", err)
	}
	// A request may use only what the session made.
	if _, err := docSend(`{"jsonrpc":"2.0","id":1,"method":"task.get","params":{"task_id":"`+uuid.NewString()+`"}}`, map[string]bool{}, map[string]bool{}, map[string]bool{}); err == nil ||
		!strings.Contains(err.Error(), "no earlier line of this session produced it") {
		t.Errorf("an unbound id in a request: %v", err)
	}
	// Malformed requests go out byte for byte.
	st, err := docSend(`{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]`, nil, nil, nil)
	if err != nil || string(st.send) != `{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]` {
		t.Errorf("malformed request: %q %v", st.send, err)
	}
}
