// A node-storm bolt for tdist-storm's peer test: upper-cases the first value, forwards the
// others (the trace field included), logs the task ids of each emit (node-storm leaves
// need_task_ids to Storm's default, true). A basic bolt anchors and acks by itself, and fails
// the tuple when the function throws (first value "explode").
var storm = require('node-storm')
var worker = require('node-storm/lib/worker')

var upper = storm.basicbolt(function (data) {
	var first = data.tuple[0]
	if (first === 'explode') {
		throw new Error('asked to explode')
	}
	var self = this
	this.emit([String(first).toUpperCase()].concat(data.tuple.slice(1))).then(function (tasks) {
		self.log('task ids ' + JSON.stringify(tasks))
	})
}).declareOutputFields(['word', '_trace'])

var builder = storm.topologybuilder()
builder.setBolt('nodebolt', upper)
worker(builder.createTopology()).run()
