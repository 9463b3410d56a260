package bulkexport

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Bounds of what is read from a server's error answers.
const (
	// maxErrorBody bounds the bytes of an error response read.
	maxErrorBody = 64 << 10
	// maxIssues bounds the issues of one OperationOutcome put in a message.
	maxIssues = 5
	// maxMessage bounds one message made of an answer.
	maxMessage = 512
)

// operationOutcome is the part of a FHIR OperationOutcome read here.
type operationOutcome struct {
	ResourceType string `json:"resourceType"`
	Issue        []struct {
		Severity    string `json:"severity"`
		Code        string `json:"code"`
		Diagnostics string `json:"diagnostics"`
		Details     struct {
			Text string `json:"text"`
		} `json:"details"`
	} `json:"issue"`
}

// outcomeMessage reads body as an OperationOutcome and says its issues in a
// line ("error processing: Unknown type Foo; …"); ok is false when body is
// not one.
func outcomeMessage(body []byte) (msg string, ok bool) {
	var oo operationOutcome
	if json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return "", false
	}
	var parts []string
	for i, is := range oo.Issue {
		if i == maxIssues {
			parts = append(parts, fmt.Sprintf("and %d more issues", len(oo.Issue)-i))
			break
		}
		text := is.Diagnostics
		if text == "" {
			text = is.Details.Text
		}
		parts = append(parts, strings.TrimSpace(strings.Join(nonEmpty(is.Severity, is.Code), " ")+": "+text))
	}
	if len(parts) == 0 {
		return "OperationOutcome without issues", true
	}
	return clip(strings.Join(parts, "; ")), true
}

// bodyMessage is what an error answer says: its OperationOutcome's issues,
// else its first bytes as text.
func bodyMessage(body []byte) string {
	if msg, ok := outcomeMessage(body); ok {
		return msg
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if s == "" {
		return "no body"
	}
	return clip(s)
}

// ReadOutcomes reads an export's error file (NDJSON of OperationOutcomes)
// and returns a message per line, at most max of them, and how many lines
// there were. A line that is not an OperationOutcome is reported as such.
// Lines longer than maxLine are reported, not held.
func ReadOutcomes(r io.Reader, max int) (msgs []string, lines int, err error) {
	const maxLine = 1 << 20
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		lines++
		if len(msgs) >= max {
			continue
		}
		msg, ok := outcomeMessage([]byte(line))
		if !ok {
			msg = fmt.Sprintf("line %d: not an OperationOutcome", lines)
		}
		msgs = append(msgs, msg)
	}
	if err := sc.Err(); err != nil {
		return msgs, lines, fmt.Errorf("line %d: %w", lines+1, err)
	}
	return msgs, lines, nil
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// clip bounds a message to maxMessage bytes, on a rune boundary.
func clip(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
