// A node-storm spout for tdist-storm's peer test: each `next` emits the next number with
// itself as id and syncs. node-storm does not sync after `ack`/`fail` by itself (its README's
// handlers do not either), while ShellSpout waits for that sync: the handlers here sync,
// unless NODE_SPOUT_NO_SYNC=1, which shows the harness timing out as ShellSpout would.
var storm = require('node-storm')
var worker = require('node-storm/lib/worker')

var n = 0
var numbers = storm.spout(function (sync) {
	n += 1
	this.emit([n], {id: n})
	sync()
}).declareOutputFields(['n'])

function handled(kind) {
	return function (data) {
		numbers.collector.log(kind + ' ' + data.id)
		if (process.env.NODE_SPOUT_NO_SYNC !== '1') {
			numbers.collector.sync()
		}
	}
}
numbers.on('ack', handled('acked')).on('fail', handled('failed'))

var builder = storm.topologybuilder()
builder.setSpout('nodespout', numbers)
worker(builder.createTopology()).run()
