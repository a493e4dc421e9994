"""The CloudStack adapter, the only package that uses `cs`:

- `client`: `CloudStackClient`, through which every API call goes (signed requests, retries, async jobs,
  listings, template writes and waits);
- `credentials`: the endpoint and keys, from a failure-domain Secret or the `cs` configuration;
- `rows`: what the client returns and is given (zones, templates, catalogue entries, owner scopes);
- `upload`: streaming a local image to the secondary-storage VM;
- `errors`: the errors raised, the retry policy, and failures worded without keys;
- `library`: the one import of `cs`, made on first use.
"""
