package httpapi

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gofiber/fiber/v2"

	"github.com/hookline/hookline/pkg/metrics"
)

// docs/openapi.yaml is a copy of the embedded document, for readers of the repository.
func TestOpenAPICopyInDocs(t *testing.T) {
	docs, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(docs, OpenAPI()) {
		t.Fatal("docs/openapi.yaml differs from pkg/httpapi/openapi.yaml, its source: cp pkg/httpapi/openapi.yaml docs/openapi.yaml")
	}
}

// The API serves the document without a key.
func TestOpenAPIServed(t *testing.T) {
	api := New(nil, nil, nil, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)), Options{AdminKey: "k"})
	resp, err := api.App().Test(httptestRequest(http.MethodGet, "/openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/yaml" || !bytes.Equal(body, OpenAPI()) {
		t.Fatalf("GET /openapi.yaml = %d %s, %d bytes; want 200 application/yaml, the document", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}

func httptestRequest(method, path string) *http.Request {
	req, _ := http.NewRequest(method, path, nil)
	return req
}

// Every route the Fiber app serves is an operation of the document, with every status its
// handlers can answer, and the document describes nothing else. The statuses are derived from
// the source of this package (see answers), so a new route, or a new status of an old one, that
// the document lacks fails here.
func TestOpenAPICoversRoutes(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.yaml is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	src := analyze(t)
	api := New(nil, nil, nil, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	served := map[string]bool{}
	for _, r := range chains(api.App()) {
		path := fiberParam.ReplaceAllString(r.path, "{$1}")
		key := r.method + " " + path
		served[key] = true
		want := map[int]bool{http.StatusInternalServerError: true} // any route, when something unexpected fails
		for _, h := range r.handlers {
			for s := range src.statusesOf(t, h) {
				want[s] = true
			}
		}
		item := doc.Paths.Value(path)
		var op *openapi3.Operation
		if item != nil {
			op = item.GetOperation(r.method)
		}
		if op == nil {
			t.Errorf("%s (handlers %v) is not in openapi.yaml: add it with statuses %v", key, r.handlers, sorted(want))
			continue
		}
		documented := map[int]bool{}
		for code := range op.Responses.Map() {
			n, err := strconv.Atoi(code)
			if err != nil {
				t.Errorf("%s: response %q: want a status code", key, code)
			}
			documented[n] = true
		}
		for _, s := range sorted(want) {
			if !documented[s] {
				t.Errorf("%s can answer %d, which openapi.yaml does not document", key, s)
			}
		}
		for _, s := range sorted(documented) {
			if !want[s] {
				t.Errorf("%s: openapi.yaml documents %d, which its handlers %v never answer", key, s, r.handlers)
			}
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !served[method+" "+path] {
				t.Errorf("openapi.yaml describes %s %s, which the API does not serve", method, path)
			}
		}
	}
}

var fiberParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// route is one route of the app with every handler that runs for it: the middleware
// registered before it, then its own, named as in this package's source.
type route struct {
	method, path string
	handlers     []string
}

func chains(app *fiber.App) []route {
	own := app.GetRoutes(true)
	var (
		out []route
		mw  = map[string][]string{} // method -> middleware so far
	)
	j := 0
	for _, r := range app.GetRoutes(false) {
		names := make([]string, len(r.Handlers))
		for i, h := range r.Handlers {
			names[i] = handlerName(h)
		}
		if j < len(own) && own[j].Method == r.Method && own[j].Path == r.Path && len(own[j].Handlers) == len(r.Handlers) &&
			reflect.ValueOf(own[j].Handlers[0]).Pointer() == reflect.ValueOf(r.Handlers[0]).Pointer() {
			j++
			if r.Method != http.MethodHead { // Fiber adds a HEAD beside every GET
				out = append(out, route{r.Method, r.Path, append(slices.Clone(mw[r.Method]), names...)})
			}
			continue
		}
		mw[r.Method] = append(mw[r.Method], names...) // app.Use: every later route of this method
	}
	return out
}

// handlerName names a handler by its function's name: "registerWebhook" for a method value,
// "RequestID" for a closure RequestID made, "HTTPHandler" for adaptor's. A closure inlined into
// its caller is named after both ("(*API).routes.HTTPHandler.func1"): the last name counts.
func handlerName(h fiber.Handler) string {
	name := runtime.FuncForPC(reflect.ValueOf(h).Pointer()).Name()
	name = strings.TrimSuffix(name, "-fm")
	name = name[strings.LastIndex(name, "/")+1:]
	parts := strings.Split(name, ".")
	for len(parts) > 1 && closureName.MatchString(parts[len(parts)-1]) {
		parts = parts[:len(parts)-1]
	}
	return parts[len(parts)-1]
}

var closureName = regexp.MustCompile(`^(func|gowrap)[0-9]+$`)

func sorted(m map[int]bool) []int { return slices.Sorted(maps.Keys(m)) }

// What this package's source says each function can answer.
//
// A function answers the statuses it names (fiber.StatusX), 200 when it writes a body without
// setting a status (c.JSON, c.Send, c.SendStream), 422 for a field error it makes, the status
// errorHandler maps a sentinel to when it names the sentinel, and everything its callees in
// this package answer. Calls into our other packages answer what belowAnswers says they can
// return; one missing from that table fails the test, so a new dependency is looked at once.
// errorHandler and answerFor are the mapping, not a source of statuses.
type source struct {
	funcs     map[string]*fn // by bare name; methods of any receiver share a name's entry
	sentinels map[string]int // "webhook.ErrNotFound" -> 404, read from the sentinels table
	memo      map[string]map[int]bool
}

type fn struct {
	statuses map[int]bool
	calls    map[string]bool // functions, methods and package-level vars of this package
	below    map[string]bool // "store.GetWebhook", "a.blobs.Open"
}

// belowAnswers is what the calls into our other packages can return that the error handler
// maps: a sentinel of the sentinels table, or "field" for an *event.FieldError (422). It is
// their documented contract (each function's comment in store, blob, webhook and event).
var belowAnswers = map[string][]string{
	"store.GetWebhook":        {"webhook.ErrNotFound", "store.ErrUnavailable"},
	"store.UpdateWebhook":     {"webhook.ErrNotFound", "store.ErrUnavailable"},
	"store.DeleteWebhook":     {"webhook.ErrNotFound", "store.ErrUnavailable"},
	"store.RotateSecret":      {"webhook.ErrNotFound", "store.ErrUnavailable"},
	"store.GetDelivery":       {"store.ErrNoDelivery", "store.ErrUnavailable"},
	"store.RetryDelivery":     {"store.ErrConflict", "store.ErrNoDelivery", "store.ErrUnavailable"},
	"store.GetFile":           {"store.ErrNoFile", "store.ErrUnavailable"},
	"store.CreateEventType":   {"store.ErrDuplicate", "store.ErrUnavailable"},
	"store.GetEventType":      {"store.ErrNoEventType", "store.ErrUnavailable"},
	"store.UpdateEventType":   {"store.ErrNoEventType", "store.ErrUnavailable"},
	"store.DeleteEventType":   {"store.ErrNoEventType", "store.ErrConflict", "store.ErrUnavailable"},
	"store.EventTypeSchema":   {"store.ErrUnavailable"},
	"store.GetEvent":          {"store.ErrNoEvent", "store.ErrUnavailable"},
	"store.ListEvents":        {"store.ErrUnavailable"},
	"store.FileOwners":        {"store.ErrUnavailable"},
	"store.WebhookOwner":      {"store.ErrUnavailable"},
	"event.CompileSchema":     nil, // its error becomes a field error on schema
	"event.StorableJSON":      {"field"},
	"event.ValidID":           nil,
	"event.ParseFilter":       {"field"},
	"store.LookupAPIKey":      {"store.ErrNoKey", "store.ErrUnavailable"},
	"store.ParseCursor":       nil, // store.ErrBadCursor, which page turns into a field error
	"store.ListEventTypes":    {"store.ErrUnavailable"},
	"store.EventTypeIDByName": {"store.ErrUnavailable"},
	"store.MissingEventTypes": {"store.ErrUnavailable"},
	"store.CreateWebhook":     {"store.ErrUnavailable"},
	"store.ListWebhooks":      {"store.ErrUnavailable"},
	"store.ListDeliveries":    {"store.ErrUnavailable"},
	"store.RecoverWebhook":    {"store.ErrUnavailable"},
	"store.ListRejected":      {"store.ErrUnavailable"},
	"store.HashKey":           nil,
	"store.IsUnavailable":     nil, // a bool; resolveKey keeps a cached key when true
	"a.blobs.Open":            {"blob.ErrNotFound"},
	"a.blobs.Put":             nil,
	"a.blobs.Delete":          nil, // logged, never answered
	"a.db.PingContext":        {"store.ErrUnavailable"},
	"a.js.Publish":            nil, // publish answers 503 itself
	"a.js.Conn":               nil, // the live tail subscribes on it and answers 503 itself
	"natsx.AttemptsSubject":   nil,
	"store.EventTypeNames":    nil, // typeLabel: an error keeps the names it has, never an answer
	"a.opts.Sealer.Seal":      nil,
	"webhook.ValidateURL":     {"field"},
	"webhook.ValidateHeaders": {"field"},
	"webhook.ValidatePayload": {"field"},
	"webhook.NewSecret":       nil,
	"event.Decode":            {"field"},
	"event.Encode":            nil,
	"event.EncodeUpload":      nil,
	"event.Subject":           nil,
	"event.MsgID":             nil,
	"event.ValidTypeName":     nil,
	"natsx.Ready":             nil,
	"egress.Blocked":          nil, // a bool; publicTarget answers the 422 itself
}

// handlersBelow are handlers of other packages the app installs, and what they answer.
var handlersBelow = map[string][]int{
	"HTTPHandler": {http.StatusOK}, // adaptor's, for /metrics
}

// sinks turn errors into answers: their statuses are the errors', counted where they arise.
var sinks = map[string]bool{"errorHandler": true, "answerFor": true}

var fiberStatus = map[string]int{
	"StatusOK": 200, "StatusAccepted": 202, "StatusBadRequest": 400, "StatusUnauthorized": 401,
	"StatusForbidden": 403, "StatusNotFound": 404, "StatusMethodNotAllowed": 405, "StatusConflict": 409,
	"StatusRequestEntityTooLarge": 413, "StatusUnprocessableEntity": 422, "StatusTooManyRequests": 429,
	"StatusInternalServerError": 500, "StatusServiceUnavailable": 503,
}

func analyze(t *testing.T) *source {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &source{funcs: map[string]*fn{}, sentinels: map[string]int{}, memo: map[string]map[int]bool{}}
	entry := func(name string) *fn {
		if s.funcs[name] == nil {
			s.funcs[name] = &fn{statuses: map[int]bool{}, calls: map[string]bool{}, below: map[string]bool{}}
		}
		return s.funcs[name]
	}
	type body struct {
		name    string
		node    ast.Node
		imports map[string]string // name -> path, of every import of its file
	}
	var bodies []body
	vars := map[string]bool{}
	for _, pkg := range pkgs {
		for _, file := range pkg.Files {
			imports := map[string]string{}
			for _, imp := range file.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				name := importName(path)
				if imp.Name != nil {
					name = imp.Name.Name
				}
				imports[name] = path
			}
			for _, decl := range file.Decls {
				switch d := decl.(type) {
				case *ast.FuncDecl:
					entry(d.Name.Name)
					bodies = append(bodies, body{d.Name.Name, d.Body, imports})
				case *ast.GenDecl:
					for _, spec := range d.Specs {
						if vs, ok := spec.(*ast.ValueSpec); ok && d.Tok == token.VAR {
							for i, n := range vs.Names {
								entry(n.Name)
								vars[n.Name] = true
								if i < len(vs.Values) {
									bodies = append(bodies, body{n.Name, vs.Values[i], imports})
								}
								if n.Name == "sentinels" {
									s.readSentinels(t, vs.Values[i])
								}
							}
						}
					}
				}
			}
		}
	}
	if len(s.sentinels) != len(sentinels) {
		t.Fatalf("read %d sentinels from errors.go, the table has %d", len(s.sentinels), len(sentinels))
	}
	for _, b := range bodies {
		f := s.funcs[b.name]
		ours := func(pkg string) bool { return strings.HasPrefix(b.imports[pkg], "github.com/hookline/hookline/") }
		ast.Inspect(b.node, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr: // pkg.Name
				id, ok := x.X.(*ast.Ident)
				if !ok || b.imports[id.Name] == "" {
					return true
				}
				switch {
				case id.Name == "fiber" && strings.HasPrefix(x.Sel.Name, "Status"):
					code, ok := fiberStatus[x.Sel.Name]
					if !ok {
						t.Fatalf("%s names fiber.%s: add it to fiberStatus", b.name, x.Sel.Name)
					}
					f.statuses[code] = true
				case ours(id.Name) && x.Sel.Name == "FieldError":
					f.statuses[http.StatusUnprocessableEntity] = true
				case s.sentinels[id.Name+"."+x.Sel.Name] != 0:
					f.statuses[s.sentinels[id.Name+"."+x.Sel.Name]] = true
				}
				return false
			case *ast.Ident: // a package-level var of this package
				if vars[x.Name] && x.Name != b.name {
					f.calls[x.Name] = true
				}
			case *ast.CallExpr:
				switch fun := x.Fun.(type) {
				case *ast.Ident: // a function of this package
					if _, ok := s.funcs[fun.Name]; ok {
						f.calls[fun.Name] = true
					}
				case *ast.SelectorExpr:
					recv := types.ExprString(fun.X)
					switch {
					case ours(recv), strings.HasPrefix(recv, "a.blobs"), strings.HasPrefix(recv, "a.db"),
						strings.HasPrefix(recv, "a.js"), strings.HasPrefix(recv, "a.opts.Sealer"):
						f.below[recv+"."+fun.Sel.Name] = true
					case b.imports[recv] != "": // another package's function
					case slices.Contains([]string{"JSON", "Send", "SendStream", "SendString"}, fun.Sel.Name) && !isStatusCall(fun.X):
						f.statuses[http.StatusOK] = true // a body without a status set first
					default: // a method, of this package's types if the name is one
						if _, ok := s.funcs[fun.Sel.Name]; ok {
							f.calls[fun.Sel.Name] = true
						}
					}
				}
			}
			return true
		})
	}
	return s
}

// importName is the name an import path's package goes by: fiber for …/fiber/v2, nats for
// …/nats.go.
func importName(path string) string {
	elems := strings.Split(path, "/")
	name := elems[len(elems)-1]
	if regexp.MustCompile(`^v[0-9]+$`).MatchString(name) && len(elems) > 1 {
		name = elems[len(elems)-2]
	}
	name = strings.TrimSuffix(name, ".go")
	return strings.TrimPrefix(name, "go-")
}

func isStatusCall(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Status"
}

// readSentinels reads the entries {pkg.ErrX, fiber.StatusY} of the sentinels table.
func (s *source) readSentinels(t *testing.T, table ast.Expr) {
	for _, elt := range table.(*ast.CompositeLit).Elts {
		pair := elt.(*ast.CompositeLit).Elts
		status := pair[1].(*ast.SelectorExpr).Sel.Name
		if fiberStatus[status] == 0 {
			t.Fatalf("sentinels: unknown status fiber.%s", status)
		}
		s.sentinels[types.ExprString(pair[0])] = fiberStatus[status]
	}
}

// statusesOf is every status the function or handler named name can answer.
func (s *source) statusesOf(t *testing.T, name string) map[int]bool {
	t.Helper()
	if codes, ok := handlersBelow[name]; ok {
		out := map[int]bool{}
		for _, c := range codes {
			out[c] = true
		}
		return out
	}
	if s.funcs[name] == nil {
		t.Fatalf("handler %s is neither in this package's source nor in handlersBelow", name)
	}
	out := map[int]bool{}
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		if seen[n] || sinks[n] {
			return
		}
		seen[n] = true
		f := s.funcs[n]
		for c := range f.statuses {
			out[c] = true
		}
		for call := range f.below {
			answers, ok := belowAnswers[call]
			if !ok {
				t.Fatalf("%s calls %s: add it to belowAnswers with the sentinels it can return", n, call)
			}
			for _, a := range answers {
				switch {
				case a == "field":
					out[http.StatusUnprocessableEntity] = true
				case s.sentinels[a] != 0:
					out[s.sentinels[a]] = true
				default:
					t.Fatalf("belowAnswers[%s]: %s is not in the sentinels table", call, a)
				}
			}
		}
		for callee := range f.calls {
			walk(callee)
		}
	}
	walk(name)
	return out
}
