"""A pystorm bolt for tdist-storm's peer test: upper-cases the first value, forwards the
others (the trace field included) untouched, and logs the task ids of each emit.
A first value of "explode" raises, which pystorm reports (log, error, sync, fail) and exits on."""
from pystorm import Bolt


class Upper(Bolt):
    def initialize(self, storm_conf, context):
        self.log("pystorm bolt ready as %s" % context.get("componentid"))

    def process(self, tup):
        first = tup.values[0]
        if first == "explode":
            raise ValueError("asked to explode")
        ids = self.emit([first.upper()] + list(tup.values[1:]), need_task_ids=True)
        self.log("task ids %s" % (ids,))


if __name__ == "__main__":
    Upper().run()
