"""A stand-in for how GitLab Omnibus reads gitlab.rb, shared by the unit tests (ruby on this
machine) and the lab tests (ruby on the lab's GitLab host): `ruby - FILE` with HARNESS on stdin
prints the settings the file makes as JSON."""

HARNESS = r"""
require 'json'
require 'yaml'
# Omnibus evaluates gitlab.rb with instance_eval on a config object; so does this stand-in,
# whose every unknown method is a settings hash (`x['k'] = v`) or a setter (`x 'v'`).
class GitlabRbStandIn
  attr_reader :cfg, :calls
  def initialize
    @cfg = Hash.new { |h, k| h[k] = {} }
    @calls = {}
  end
  def method_missing(name, *args)
    args.empty? ? @cfg[name.to_s] : (@calls[name.to_s] = args.first)
  end
  def respond_to_missing?(*) = true
end
c = GitlabRbStandIn.new
c.instance_eval(File.read(ARGV[0], encoding: 'UTF-8'), ARGV[0])
puts JSON.generate({
  'url' => c.calls['mattermost_external_url'],
  'mattermost' => c.cfg['mattermost'],
  'mattermost_nginx' => c.cfg['mattermost_nginx'],
  'gitlab_rails' => c.cfg['gitlab_rails'],
})
"""
