package config

import (
	"fmt"
	"strings"
)

// Pos is a position in a config file. Line and Column count from 1; zero
// means unknown.
type Pos struct {
	File   string
	Line   int
	Column int
}

// String returns "file:line:column", leaving out what is unknown.
func (p Pos) String() string {
	s := p.File
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
		if p.Column > 0 {
			s += fmt.Sprintf(":%d", p.Column)
		}
	}
	return s
}

// Problem is one thing wrong with a config.
type Problem struct {
	Pos Pos
	// Path is the key path of the setting at fault, such as
	// "lanes.batch.concurrency" or "routes[2].to"; empty for the file as a
	// whole.
	Path    string
	Message string
}

// String returns the problem as "file:line:column: path: message".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Pos.String())
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error is the error of Load and Parse when the config has problems. It
// holds every problem found, in file order, not just the first.
type Error struct {
	Problems []Problem
}

// Error returns the problems, one per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
