package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus series (docs/server.md lists them), in a registry of
// its own so that several servers live in one process (tests).
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec   // route, code
	latency  *prometheus.HistogramVec // route
	inFlight prometheus.Gauge
	queue    prometheus.Gauge
	working  prometheus.Gauge
	images   *prometheus.CounterVec // op, model
	tokens   *prometheus.CounterVec // op, model
	bytesIn  *prometheus.CounterVec // route
	bytesOut *prometheus.CounterVec // route
	rejected *prometheus.CounterVec // reason
	// batchRows: the rows (samples, twice with CFG) of each AR model's running batch
	batchRows *prometheus.GaugeVec // model
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flextok_http_requests_total",
		Help: "HTTP requests by route and status code (499: the client went away)."}, []string{"route", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flextok_http_request_duration_seconds",
		Help:    "Time from the request's headers to the end of its response, by route.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"route"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "flextok_http_in_flight_requests", Help: "Requests being served."})
	m.queue = prometheus.NewGauge(prometheus.GaugeOpts{Name: "flextok_queue_depth", Help: "Admitted requests waiting for a work slot."})
	m.working = prometheus.NewGauge(prometheus.GaugeOpts{Name: "flextok_work_in_progress", Help: "Requests holding a work slot (running the model)."})
	m.images = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flextok_images_total",
		Help: "Images encoded or decoded (rate: images/s)."}, []string{"op", "model"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flextok_tokens_total",
		Help: "Tokens produced (encode) or consumed (decode) (rate: tokens/s)."}, []string{"op", "model"})
	m.bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flextok_http_request_bytes_total",
		Help: "Request body bytes read, by route."}, []string{"route"})
	m.bytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flextok_http_response_bytes_total",
		Help: "Response body bytes written, by route."}, []string{"route"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flextok_rejected_total",
		Help: "Requests refused before running the model, by reason (queue_full, draining, a limit's name)."}, []string{"reason"})
	m.batchRows = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flextok_generate_batch_rows",
		Help: "Rows (samples; twice with CFG) in the AR model's continuous batch, by model."}, []string{"model"})
	m.reg.MustRegister(m.requests, m.latency, m.inFlight, m.queue, m.working, m.images, m.tokens, m.bytesIn, m.bytesOut, m.rejected, m.batchRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
