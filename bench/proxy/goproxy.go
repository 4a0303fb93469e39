// The reference proxy for bench/proxy.sh: Go's net/http/httputil.ReverseProxy, which
// KServe's agent forwards inference requests with, stdlib only (no h2c: that needs
// golang.org/x/net). The transport keeps up to 1000 idle upstream connections, as the
// knative transport KServe's agent uses does.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	target := flag.String("target", "", "upstream base URL")
	flag.Parse()
	upstream, err := url.Parse(*target)
	if err != nil || upstream.Host == "" {
		log.Fatalf("bad -target %q", *target)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 1000
	transport.MaxIdleConnsPerHost = 1000
	proxy.Transport = transport
	log.Fatal(http.ListenAndServe(*listen, proxy))
}
