package event

import (
	"errors"
	"strings"
	"testing"
)

func TestSubject(t *testing.T) {
	if got := Subject("upload.completed"); got != "events.upload.completed" {
		t.Errorf("Subject(upload.completed) = %q, want events.upload.completed", got)
	}
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"events.upload.completed", "upload.completed", true},
		{"events.a", "a", true},
		{"events.", "", false},
		{"events", "", false},
		{"upload.completed", "", false},
		{"EVENTS.a", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := TypeFromSubject(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("TypeFromSubject(%q) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestValidTypeName(t *testing.T) {
	for in, want := range map[string]bool{
		"upload.completed":             true,
		"a":                            true,
		"a-b_c.d0.9":                   true,
		strings.Repeat("a", 100):       true,
		strings.Repeat("a", 101):       false,
		"":                             false,
		".a":                           false,
		"a.":                           false,
		"a..b":                         false,
		"Upload.completed":             false,
		"upload completed":             false,
		"upload.*":                     false,
		"upload.>":                     false,
		"upload/completed":             false,
		"upload.completé":              false,
		"a." + strings.Repeat("b", 99): false, // 101 characters
	} {
		if got := ValidTypeName(in); got != want {
			t.Errorf("ValidTypeName(%.40q) = %v, want %v", in, got, want)
		}
	}
}

func TestValidID(t *testing.T) {
	for in, want := range map[string]bool{
		"evt_123":                              true,
		"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9d": true,
		"a.b:c-d_E":                            true,
		"x":                                    true,
		strings.Repeat("a", 128):               true,
		strings.Repeat("a", 129):               false,
		"":                                     false,
		"a b":                                  false,
		"a/b":                                  false,
		"a*":                                   false,
		"é":                                    false,
		"a\n":                                  false,
	} {
		if got := ValidID(in); got != want {
			t.Errorf("ValidID(%.40q) = %v, want %v", in, got, want)
		}
	}
}

func TestFieldError(t *testing.T) {
	err := error(&FieldError{Field: "user_id", Problem: "is required"})
	if got, want := err.Error(), "user_id: is required"; got != want {
		t.Errorf("FieldError.Error() = %q, want %q", got, want)
	}
	var fp interface{ FieldProblem() (string, string) }
	if !errors.As(err, &fp) {
		t.Fatal("*FieldError has no FieldProblem method")
	}
	if f, p := fp.FieldProblem(); f != "user_id" || p != "is required" {
		t.Errorf("FieldProblem() = %q, %q, want user_id, is required", f, p)
	}
}
