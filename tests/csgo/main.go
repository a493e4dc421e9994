// Command csgo resolves a CloudStack template with the cloudstack-go client
// the way Cluster API Provider CloudStack (CAPC) does, so tests can check what
// CAPC would conclude about a template against a CloudStack endpoint.
//
// By name (CAPC's path when a machine template names its template):
//
//	csgo -name NAME -zone-id ZONE
//
// lists templates with name, templatefilter=executable and the zone id, and
// succeeds only when exactly one template matches.
//
// By id (CAPC's path when the template id is set; a name, if also given, must
// equal the name CloudStack returns):
//
//	csgo -id UUID [-name NAME]
//
// lists templates with id and templatefilter=executable, without a zone.
//
// The endpoint and keys come from -endpoint/-key/-secret or from
// CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY and CLOUDSTACK_SECRET. The result is one
// JSON line on stdout: {"id":...,"name":...,"count":N} with exit code 0, or
// {"error":...,"count":N} with exit code 1. count is the number of rows
// cloudstack-go reported (-1 when the request itself failed). Usage errors
// exit with 2.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/apache/cloudstack-go/v2/cloudstack"
)

// templateFilter is the only filter CAPC uses to resolve templates.
const templateFilter = "executable"

type options struct {
	endpoint  string
	apiKey    string
	secretKey string
	verifySSL bool
	name      string
	id        string
	zoneID    string
	projectID string
}

type resolved struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Count int    `json:"count"`
}

type failure struct {
	Error string `json:"error"`
	Count int    `json:"count"`
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("csgo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.endpoint, "endpoint", os.Getenv("CLOUDSTACK_ENDPOINT"), "CloudStack API URL (default $CLOUDSTACK_ENDPOINT)")
	fs.StringVar(&o.apiKey, "key", os.Getenv("CLOUDSTACK_KEY"), "API key (default $CLOUDSTACK_KEY)")
	fs.StringVar(&o.secretKey, "secret", os.Getenv("CLOUDSTACK_SECRET"), "secret key (default $CLOUDSTACK_SECRET)")
	fs.BoolVar(&o.verifySSL, "verify-ssl", true, "verify the endpoint's TLS certificate")
	fs.StringVar(&o.name, "name", "", "template name")
	fs.StringVar(&o.id, "id", "", "template id; when set, the lookup is by id and -name is only cross-checked")
	fs.StringVar(&o.zoneID, "zone-id", "", "zone id (required for a lookup by name)")
	fs.StringVar(&o.projectID, "project-id", "", "project id or name the lookup is scoped to")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	case o.endpoint == "" || o.apiKey == "" || o.secretKey == "":
		return o, errors.New("endpoint, key and secret are required (flags or CLOUDSTACK_* env)")
	case o.id == "" && o.name == "":
		return o, errors.New("one of -id or -name is required")
	case o.id == "" && o.zoneID == "":
		return o, errors.New("-zone-id is required for a lookup by name")
	}
	return o, nil
}

// resolveByName follows CAPC's name path: one executable template with that
// name in the zone, else an error.
func resolveByName(cs *cloudstack.CloudStackClient, o options) (resolved, int, error) {
	id, count, err := cs.Template.GetTemplateID(o.name, templateFilter, o.zoneID, cloudstack.WithProject(o.projectID))
	if err != nil {
		return resolved{}, count, fmt.Errorf("could not get Template ID from %s: %w", o.name, withoutQuery(err))
	}
	if count != 1 {
		return resolved{}, count, fmt.Errorf("expected 1 Template with name %s, but got %d", o.name, count)
	}
	return resolved{ID: id, Name: o.name, Count: count}, count, nil
}

// resolveByID follows CAPC's id path: exactly one executable row for the id
// (no zone given), whose name must match the requested name if there is one.
func resolveByID(cs *cloudstack.CloudStackClient, o options) (resolved, int, error) {
	tmpl, count, err := cs.Template.GetTemplateByID(o.id, templateFilter, cloudstack.WithProject(o.projectID))
	if err != nil {
		return resolved{}, count, fmt.Errorf("could not get Template by ID %s: %w", o.id, withoutQuery(err))
	}
	if count != 1 {
		return resolved{}, count, fmt.Errorf("expected 1 Template with UUID %s, but got %d", o.id, count)
	}
	if o.name != "" && o.name != tmpl.Name {
		return resolved{}, count, fmt.Errorf(
			"template name %s does not match name %s returned using UUID %s", o.name, tmpl.Name, o.id)
	}
	return resolved{ID: tmpl.Id, Name: tmpl.Name, Count: count}, count, nil
}

// withoutQuery drops the query from a failed request's URL: it is the signed
// request and holds the API key and signature. Applied before the error is
// wrapped, because wrapping freezes the text.
func withoutQuery(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		if i := strings.IndexByte(urlErr.URL, '?'); i >= 0 {
			urlErr.URL = urlErr.URL[:i] + "?<redacted>"
		}
	}
	return err
}

// redact is the last guard that keeps the keys out of what is printed.
func redact(text string, o options) string {
	for _, secret := range []string{o.apiKey, o.secretKey} {
		if secret != "" {
			text = strings.ReplaceAll(text, secret, "<redacted>")
		}
	}
	return text
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "csgo:", err)
		}
		return 2
	}
	cs := cloudstack.NewAsyncClient(o.endpoint, o.apiKey, o.secretKey, o.verifySSL)
	var result resolved
	var count int
	if o.id != "" {
		result, count, err = resolveByID(cs, o)
	} else {
		result, count, err = resolveByName(cs, o)
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	if err != nil {
		_ = enc.Encode(failure{Error: redact(err.Error(), o), Count: count})
		return 1
	}
	_ = enc.Encode(result)
	return 0
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
