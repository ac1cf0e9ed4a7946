package main

// deploy/ and docs/operations.md checked against fabricd itself, so that
// they cannot go stale: the metrics the alert rules use against a live
// /metrics, the settings of the systemd unit and of the example config file
// through fabricd's own config loader, and the settings, metrics and alerts
// the operations guide names.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/internal/fabricdtest"
	"github.com/chimera-fabric/fabric/protocol"
)

const (
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	unitFile      = "../../deploy/systemd/fabricd.service"
	confExample   = "../../deploy/fabricd.conf.example"
	operationsDoc = "../../docs/operations.md"
)

type alertRule struct {
	name, expr, forDur, severity, runbook string
	line                                  int
}

// readAlertRules reads the rules of alerts.yml. The file's shape is fixed
// (one group, "- alert:" items with expr, for, labels.severity and
// annotations.runbook), so a few patterns read it; a rule they cannot read
// whole fails the test rather than going unchecked.
func readAlertRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	var rules []alertRule
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		trim := strings.TrimSpace(l)
		if strings.HasPrefix(trim, "- alert:") {
			rules = append(rules, alertRule{name: strings.TrimSpace(strings.TrimPrefix(trim, "- alert:")), line: i + 1})
			continue
		}
		if len(rules) == 0 {
			continue
		}
		r := &rules[len(rules)-1]
		key, val, ok := strings.Cut(trim, ":")
		if !ok {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		switch key {
		case "expr":
			if val == "|" {
				var body []string
				for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || indent(lines[i+1]) > indent(l)) {
					i++
					body = append(body, strings.TrimSpace(lines[i]))
				}
				val = strings.TrimSpace(strings.Join(body, "\n"))
			}
			r.expr = val
		case "for":
			r.forDur = val
		case "severity":
			r.severity = val
		case "runbook":
			r.runbook = val
		}
	}
	if n := strings.Count(string(b), "- alert:"); len(rules) != n || n == 0 {
		t.Fatalf("%s: read %d rules of %d", alertsFile, len(rules), n)
	}
	for _, r := range rules {
		if r.expr == "" || r.severity == "" || r.runbook == "" {
			t.Errorf("%s:%d: alert %s: want expr, labels.severity and annotations.runbook; got %+v", alertsFile, r.line, r.name, r)
		}
	}
	return rules
}

// TestAlertRules checks that every series and label the alert rules use is
// one a live fabricd exports, and that each alert has its runbook section.
func TestAlertRules(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	rules := readAlertRules(t)

	// A durable store and one task, so that the labelled series exist.
	s := fabricdtest.Start(t, "--data", t.TempDir(), "--workers", "1")
	c := dial(t, s)
	register(t, c, "echo", "echo")
	waitTask(t, c, submitTask(t, c, map[string]any{"agent": "echo", "input": 1}))
	f := scrape(t, s.Addr, "")
	defined := map[string]bool{}
	for _, n := range fabricSeries(t) {
		defined[n] = true
	}
	ops, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}

	metricRE := regexp.MustCompile(`\b((?:fabric|go|process)_[a-z0-9_]+)\b`)
	selectorRE := regexp.MustCompile(`\b([a-z_][a-z0-9_]*)\{([^}]*)\}`)
	matcherRE := regexp.MustCompile(`([a-z_][a-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	groupingRE := regexp.MustCompile(`\b(?:by|on|without|ignoring)\s*\(([^)]*)\)`)
	targetLabels := map[string]bool{"job": true, "instance": true}

	// family finds the family of a series name: itself, or the histogram
	// whose _bucket, _sum or _count it is.
	family := func(name string) (string, bool) {
		if f[name] != nil {
			return name, true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && f[base] != nil {
				return base, true
			}
		}
		return "", false
	}
	labelsOfFamily := func(fam string) map[string]bool {
		out := map[string]bool{}
		for _, m := range f[fam].GetMetric() {
			for _, l := range m.GetLabel() {
				out[l.GetName()] = true
			}
		}
		return out
	}

	names := map[string]bool{}
	for _, r := range rules {
		where := fmt.Sprintf("%s:%d: %s", alertsFile, r.line, r.name)
		if names[r.name] {
			t.Errorf("%s: alert name used twice", where)
		}
		names[r.name] = true
		if r.severity != "critical" && r.severity != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", where, r.severity)
		}
		if want := "docs/operations.md#" + strings.ToLower(r.name); r.runbook != want {
			t.Errorf("%s: runbook %q, want %q", where, r.runbook, want)
		}
		if !regexp.MustCompile(`(?m)^### ` + regexp.QuoteMeta(r.name) + `\s*$`).Match(ops) {
			t.Errorf("%s: %s has no runbook section \"### %s\"", where, operationsDoc, r.name)
		}
		if r.forDur != "" {
			if _, err := time.ParseDuration(r.forDur); err != nil {
				t.Errorf("%s: for: %v", where, err)
			}
		}

		used := map[string]bool{} // labels of the families the rule uses
		for _, m := range metricRE.FindAllStringSubmatch(r.expr, -1) {
			fam, ok := family(m[1])
			if !ok {
				t.Errorf("%s: %s is not exported by fabricd's /metrics", where, m[1])
				continue
			}
			if strings.HasPrefix(fam, "fabric_") && !defined[fam] {
				t.Errorf("%s: %s is exported but not defined in internal/metrics", where, fam)
			}
			for l := range labelsOfFamily(fam) {
				used[l] = true
			}
		}
		if len(used) == 0 && !strings.Contains(r.expr, "fabric_") && !strings.Contains(r.expr, `up{job="fabricd"}`) {
			t.Errorf("%s: uses no fabricd series", where)
		}
		for _, sel := range selectorRE.FindAllStringSubmatch(r.expr, -1) {
			fam, ok := family(sel[1])
			if !ok {
				continue // up{...}, or reported above
			}
			have := labelsOfFamily(fam)
			for _, mt := range matcherRE.FindAllStringSubmatch(sel[2], -1) {
				if !have[mt[1]] && !targetLabels[mt[1]] {
					t.Errorf("%s: %s has no label %q (it has %v)", where, fam, mt[1], have)
				}
				if mt[1] == "state" && mt[2] == "=" && !protocol.State(mt[3]).Valid() {
					t.Errorf("%s: state=%q is no task state", where, mt[3])
				}
			}
		}
		for _, g := range groupingRE.FindAllStringSubmatch(r.expr, -1) {
			for _, l := range strings.Split(g[1], ",") {
				l = strings.TrimSpace(l)
				if l != "" && !used[l] && !targetLabels[l] && l != "le" {
					t.Errorf("%s: groups by %q, a label of none of the series it uses", where, l)
				}
			}
		}
	}

	// The queue alert's threshold is 90% of the default --max-queued.
	for _, r := range rules {
		if r.name != "FabricQueueNearlyFull" {
			continue
		}
		want := strconv.Itoa(defaultConfig().MaxQueued * 9 / 10)
		if !strings.Contains(r.expr, "> "+want) {
			t.Errorf("FabricQueueNearlyFull: %q, want the threshold %s (90%% of the default --max-queued %d)", r.expr, want, defaultConfig().MaxQueued)
		}
	}
}

// unitDirectives reads the systemd unit: directive name to its values.
func unitDirectives(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s: %q is no Key=Value line", unitFile, l)
		}
		out[k] = append(out[k], v)
	}
	return out
}

// TestSystemdUnit loads the unit's settings (ExecStart's flags, its
// FABRIC_* environment, the example config file in place of
// /etc/fabric/fabricd.conf) with fabricd's config loader, and checks the
// directives that keep it safe and let it drain.
func TestSystemdUnit(t *testing.T) {
	d := unitDirectives(t)
	one := func(k string) string {
		t.Helper()
		if len(d[k]) != 1 {
			t.Fatalf("%s: want one %s=; got %q", unitFile, k, d[k])
		}
		return d[k][0]
	}

	known := map[string]bool{"FABRIC_CONFIG": true}
	for _, s := range new(config).settings("serve") {
		known[envName(s.name)] = true
	}
	envs := map[string]string{}
	for _, e := range d["Environment"] {
		k, v, ok := strings.Cut(e, "=")
		if !ok || !known[k] {
			t.Errorf("%s: Environment=%s: want FABRIC_NAME=value of a fabricd setting", unitFile, e)
		}
		envs[k] = v
	}
	if ef := one("EnvironmentFile"); !strings.HasSuffix(ef, "/fabricd.env") {
		t.Errorf("EnvironmentFile=%s: want the file holding FABRIC_TOKEN", ef)
	}
	envs["FABRIC_TOKEN"] = "from-the-environment-file"

	args := strings.Fields(one("ExecStart"))
	if len(args) < 2 || filepath.Base(args[0]) != "fabricd" || args[1] != "serve" {
		t.Fatalf("ExecStart=%s: want fabricd serve ...", one("ExecStart"))
	}
	args = args[2:]
	for i := range args {
		if args[i] == "--config" && i+1 < len(args) {
			if args[i+1] != "/etc/fabric/fabricd.conf" {
				t.Errorf("ExecStart: --config %s, want /etc/fabric/fabricd.conf (ConfigurationDirectory=fabric)", args[i+1])
			}
			args[i+1] = confExample
		}
	}
	cfg, err := load("serve", args, func(k string) string { return envs[k] })
	if err != nil {
		t.Fatalf("the unit's settings do not load: %v", err)
	}

	if want := "/var/lib/" + one("StateDirectory"); cfg.Data != want {
		t.Errorf("--data is %s; want %s, the StateDirectory", cfg.Data, want)
	}
	if cfg.Token == "" {
		t.Error("the token from the EnvironmentFile does not reach the config")
	}
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v (write it as a Go duration, e.g. 60s)", err)
	}
	// serve gives the drain its timeout, then up to 5s to close the
	// connections and 5s to stop the HTTP server.
	if min := cfg.DrainTimeout + 10*time.Second; stop <= min {
		t.Errorf("TimeoutStopSec=%s: want more than --drain-timeout %s + 10s", stop, cfg.DrainTimeout)
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "KillSignal": "SIGTERM",
		"KillMode": "mixed", "Restart": "on-failure", "Type": "exec",
	} {
		if got := one(k); got != want {
			t.Errorf("%s=%s, want %s", k, got, want)
		}
	}
	if n, err := strconv.Atoi(one("LimitNOFILE")); err != nil || n <= cfg.MaxConns {
		t.Errorf("LimitNOFILE=%s: want a number above --max-connections %d (a descriptor per connection)", one("LimitNOFILE"), cfg.MaxConns)
	}
	if one("MemoryMax") == "" {
		t.Error("MemoryMax is empty")
	}
	if v, ok := d["MemoryDenyWriteExecute"]; ok && slices.Contains(v, "yes") {
		t.Error("MemoryDenyWriteExecute=yes forbids the wazero compiler's executable pages")
	}
}

// confSetting is one "name = value" line of the example, set or commented.
type confSetting struct {
	name, value string
	commented   bool
	line        int
}

func readConfExample(t *testing.T) []confSetting {
	t.Helper()
	b, err := os.ReadFile(confExample)
	if err != nil {
		t.Fatal(err)
	}
	// A comment that looks like a setting ("# name = value") is one.
	re := regexp.MustCompile(`^(#\s*)?([a-z][a-z0-9-]*)\s*=(.*)$`)
	var out []confSetting
	for i, l := range strings.Split(string(b), "\n") {
		m := re.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		out = append(out, confSetting{name: m[2], value: strings.Trim(strings.TrimSpace(m[3]), `"`), commented: m[1] != "", line: i + 1})
	}
	return out
}

// TestConfigExample checks deploy/fabricd.conf.example against the settings
// of `fabricd serve`: it names each of them, no other, shows each default,
// and loads with the real loader as it is and with every line uncommented.
func TestConfigExample(t *testing.T) {
	settings := readConfExample(t)
	def := defaultConfig()
	defaults := map[string]string{}
	for _, s := range def.settings("serve") {
		defaults[s.name] = s.show()
	}
	seen := map[string]bool{}
	var all strings.Builder
	for _, s := range settings {
		want, ok := defaults[s.name]
		if !ok {
			t.Errorf("%s:%d: %q is no setting of fabricd serve", confExample, s.line, s.name)
			continue
		}
		if seen[s.name] {
			t.Errorf("%s:%d: %s is shown twice", confExample, s.line, s.name)
		}
		seen[s.name] = true
		if s.commented && s.value != want && s.name != "workers" {
			t.Errorf("%s:%d: # %s = %s, but its default is %q", confExample, s.line, s.name, s.value, want)
		}
		fmt.Fprintf(&all, "%s = %s\n", s.name, s.value)
	}
	for name := range defaults {
		if !seen[name] {
			t.Errorf("%s does not show the setting %s", confExample, name)
		}
	}
	if _, err := load("serve", []string{"--config", confExample}, env(nil)); err != nil {
		t.Errorf("the example as it is: %v", err)
	}
	uncommented := filepath.Join(t.TempDir(), "all.conf")
	if err := os.WriteFile(uncommented, []byte(all.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load("serve", []string{"--config", uncommented}, env(nil))
	if err != nil {
		t.Errorf("the example with every setting uncommented: %v", err)
	}
	c.Workers = def.Workers
	if fmt.Sprint(c) != fmt.Sprint(def) {
		t.Errorf("the example's values are not the defaults:\n got %+v\nwant %+v", c, def)
	}
}

// TestOperationsDoc checks what docs/operations.md names: each --flag is a
// setting of fabricd (or a flag of fabricd demo), each FABRIC_* variable
// one of their environment variables, each fabric_* series one that
// internal/metrics defines, each alert one of alerts.yml.
func TestOperationsDoc(t *testing.T) {
	b, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	flags := map[string]bool{"config": true, "agents": true, "log-level": true}
	envs := map[string]bool{"FABRIC_CONFIG": true}
	for _, mode := range []string{"serve", "stdio"} {
		for _, s := range new(config).settings(mode) {
			flags[s.name] = true
			envs[envName(s.name)] = true
		}
	}
	// Flags of other commands (fabric, systemctl, curl, sqlite3...) are
	// skipped: in code blocks only fabricd's lines are read, in the prose
	// code spans that start with another command.
	var scanned strings.Builder
	inBlock := false
	otherCmd := regexp.MustCompile("`(?:fabric|systemctl|journalctl|curl|sqlite3|go|make|install|iostat|kill) [^`]*`")
	for _, l := range strings.Split(doc, "\n") {
		trim := strings.TrimSpace(l)
		if strings.HasPrefix(trim, "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			if strings.HasPrefix(trim, "fabricd ") {
				scanned.WriteString(trim + "\n")
			}
			continue
		}
		scanned.WriteString(otherCmd.ReplaceAllString(l, "") + "\n")
	}
	for _, m := range regexp.MustCompile("(?:^|[\\s`(\\[])--([a-z][a-z0-9-]*)").FindAllStringSubmatch(scanned.String(), -1) {
		if !flags[m[1]] {
			t.Errorf("%s names --%s, which is no fabricd setting", operationsDoc, m[1])
		}
	}
	for _, m := range regexp.MustCompile(`\bFABRIC_[A-Z_]+\b`).FindAllString(doc, -1) {
		if !envs[m] && m != "FABRIC_URL" { // FABRIC_URL: the fabric client's
			t.Errorf("%s names %s, which is no fabricd environment variable", operationsDoc, m)
		}
	}
	defined := map[string]bool{}
	for _, n := range fabricSeries(t) {
		defined[n] = true
	}
	for _, m := range regexp.MustCompile(`\bfabric_[a-z0-9_]+\b`).FindAllString(doc, -1) {
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && defined[b] {
				base = b
			}
		}
		if !defined[base] {
			t.Errorf("%s names %s, which internal/metrics does not define", operationsDoc, m)
		}
	}
	alerts, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^### (Fabric\w+)\s*$`).FindAllStringSubmatch(doc, -1) {
		if !strings.Contains(string(alerts), "- alert: "+m[1]+"\n") {
			t.Errorf("%s has a runbook section for %s, which is no alert of %s", operationsDoc, m[1], alertsFile)
		}
	}
}
