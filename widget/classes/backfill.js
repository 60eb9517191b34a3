// "Sync existing leads" in the settings modal: a preview (a dry run: nothing is written to the
// platform) in plain words, the admin's choice for people the platform does not have yet, and the
// real run with its progress, all read from GET /api/widget/backfill. Kommo gives no total up front
// (leads are read in pages of 250), so a running sync shows "N leads synced" over a moving bar.
define(['jquery'], function ($) {
  'use strict';

  var TICK = 1000;          // ms between two reads of a running sync
  var STALL = 90 * 1000;    // ms without any change before we stop waiting and say so
  var CHOICES = ['subscribed', 'unconfirmed', 'skip'];

  function Backfill(ui, api, onDone) {
    this.ui = ui;
    this.api = api;
    this.onDone = onDone || function () {};
    this.account = null;
    this.preview = null;      // the last finished dry run
    this.choice = null;
    this.timer = null;
    this.watching = 0;        // bumped to drop the answers of an abandoned poll
    this.$el = $('<div class="mailsync__backfill" data-ms="backfill">');
    this.bind();
  }

  Backfill.prototype.provider = function () {
    return (this.account && this.account.provider) || null;
  };

  // Only for a working platform (and audience) with a saved mapping: that is what a sync uses.
  Backfill.prototype.available = function (account) {
    var provider = account && account.provider;
    var rules = (account && account.mapping && account.mapping.rules) || [];
    return !!provider && provider.status !== 'key_rejected' && rules.length > 0 &&
      !(provider.kind === 'mailchimp' && !provider.list_id);
  };

  Backfill.prototype.count = function (key, n) {
    var one = key + '_one';
    return this.ui.t(n === 1 && this.ui.has(one) ? one : key, {n: this.ui.number(n)});
  };

  Backfill.prototype.providerName = function () {
    var provider = this.provider();
    return this.ui.providerName(provider ? provider.kind : null);
  };

  // Called on every (re)render of the modal; answers whether the section should be shown.
  Backfill.prototype.load = function (account) {
    var self = this;
    this.stop();
    this.account = account;
    this.preview = null;
    this.choice = null;
    if (!this.available(account)) {
      this.$el.empty();
      return false;
    }
    this.render();
    this.busy(true);
    this.api.backfill().then(function (run) {
      self.busy(false);
      self.resume(run || {});
    }, function (failure) {
      self.busy(false);
      self.error(failure.message);
    });
    return true;
  };

  Backfill.prototype.render = function () {
    var ui = this.ui;
    this.$el.empty().append(
      $('<p class="mailsync__hint">').text(ui.t('backfill.hint', {provider: this.providerName()})),
      $('<div class="mailsync__toolbar">').append(
        ui.button('ms_backfill_preview', ui.t('backfill.preview'), 'backfill-preview')),
      this.$summary = $('<div class="mailsync__backfill-summary" data-ms="backfill-summary">').hide(),
      this.$choice = $('<fieldset class="mailsync__backfill-choice">').hide(),
      this.$progress = $('<div class="mailsync__progress" data-ms="backfill-progress">').hide().append(
        $('<div class="mailsync__progress-track">').append($('<div class="mailsync__progress-bar">')),
        $('<p class="mailsync__progress-label">')),
      this.$result = $('<p class="mailsync__backfill-result" data-ms="backfill-result">').hide(),
      this.$error = $('<p class="mailsync__note_error" data-ms="backfill-error">'));
  };

  // What the server says when the modal opens: follow a running sync, or show the last outcome.
  Backfill.prototype.resume = function (run) {
    if (run.state === 'running') {
      this.follow(run);
    } else if (run.state === 'done' && run.dry_run) {
      this.showPreview(run);
    } else if (run.state === 'done') {
      this.showResult(run);
    } else if (run.state === 'failed') {
      this.error(this.ui.t('backfill.failed', {reason: run.error || this.ui.t('backfill.no_reason')}));
    }
  };

  Backfill.prototype.bind = function () {
    var self = this;
    this.$el.on('click', '[data-ms="backfill-preview"]', function (e) {
      e.preventDefault();
      self.start({dry_run: true});
    });
    this.$el.on('change', '[data-ms="backfill-choice"]', function () {
      self.choice = $(this).val();
      self.renderWarning();
    });
    this.$el.on('click', '[data-ms="backfill-start"]', function (e) {
      e.preventDefault();
      if (self.choice) {
        self.start({dry_run: false, new_subscribers_as: self.choice});
      }
    });
  };

  Backfill.prototype.busy = function (on) {
    this.$el.find('[data-ms="backfill-preview"], [data-ms="backfill-start"], [data-ms="backfill-choice"]')
      .prop('disabled', on);
    if (!on) {
      this.$el.find('[data-ms="backfill-start"]').prop('disabled', !this.choice);
    }
  };

  Backfill.prototype.error = function (text) {
    this.ui.say(this.$error, 'error', text || '');
  };

  Backfill.prototype.start = function (body) {
    var self = this;
    this.stop();
    this.error('');
    this.$result.hide();
    if (body.dry_run) {
      this.preview = null;
      this.choice = null;
      this.$summary.hide();
      this.$choice.hide();
    }
    this.busy(true);
    this.progress({state: 'running', dry_run: body.dry_run, done: 0});
    this.api.startBackfill(body).then(function () {
      self.watch(body.dry_run);
    }, function (failure) {
      if (failure.code === 'backfill_running') {  // someone else's run: show it instead
        self.error(self.ui.t('backfill.already_running'));
        self.watch(null);
        return;
      }
      self.$progress.hide();
      self.busy(false);
      self.error(failure.code === 'invalid_backfill' ? self.ui.t('backfill.invalid') : failure.message);
    });
  };

  // A run already under way (found when the modal opened).
  Backfill.prototype.follow = function (run) {
    this.busy(true);
    this.progress(run);
    this.watch(run.dry_run);
  };

  // Reads the run every second until it is done or failed; gives up (and says so) when nothing
  // changed for STALL ms. `dryRun` null: whatever run the server has.
  Backfill.prototype.watch = function (dryRun) {
    var self = this;
    var ticket = ++this.watching;
    var last = null;
    var deadline = Date.now() + STALL;
    var poll = function () {
      self.timer = null;
      if (ticket !== self.watching || !$.contains(document.documentElement, self.$el[0])) {
        return;  // the modal closed or another poll took over
      }
      self.api.backfill().then(function (run) {
        if (ticket !== self.watching) {
          return;
        }
        run = run || {};
        var seen = [run.backfill_id, run.state, run.total, run.done].join('/');
        if (seen !== last) {
          last = seen;
          deadline = Date.now() + STALL;
        }
        if (run.state === 'running') {
          self.progress(run);
        } else if (run.state === 'done') {
          self.finished(run);
          return;
        } else if (run.state === 'failed') {
          self.failed(run);
          return;
        } else if (run.state === 'idle') {  // nothing to follow after all
          self.$progress.hide();
          self.busy(false);
          return;
        }
        self.next(poll, deadline, dryRun);
      }, function (failure) {
        if (ticket !== self.watching) {
          return;
        }
        self.error(failure.message);  // a passing failure: keep trying until the deadline
        self.next(poll, deadline, dryRun);
      });
    };
    poll();
  };

  Backfill.prototype.next = function (poll, deadline, dryRun) {
    if (Date.now() > deadline) {
      this.busy(false);
      this.error(this.ui.t(dryRun ? 'backfill.preview_stalled' : 'backfill.stalled'));
      return;
    }
    this.timer = setTimeout(poll, TICK);
  };

  Backfill.prototype.stop = function () {
    this.watching += 1;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  };

  Backfill.prototype.progress = function (run) {
    var done = run.done || 0;
    var state = run.state === 'running' ? 'running' : run.state;
    var label = this.count(run.dry_run ? 'backfill.counting' : 'backfill.synced_so_far', done);
    if (state === 'done') {
      label = this.count(run.dry_run ? 'backfill.counted' : 'backfill.result', done);
    } else if (state === 'failed') {
      label = this.count('backfill.stopped_at', done);
    }
    this.$progress.show().attr({'data-state': state, 'data-done': done});
    this.$progress.find('.mailsync__progress-label').text(label);
  };

  Backfill.prototype.finished = function (run) {
    this.error('');
    this.progress(run);
    if (run.dry_run) {
      this.$progress.hide();
      this.showPreview(run);
    } else {
      this.preview = null;   // its counts are history now: a new sync starts with a new preview
      this.choice = null;
      this.$summary.hide();
      this.$choice.hide();
      this.showResult(run);
      this.onDone(run);
    }
    this.busy(false);
  };

  Backfill.prototype.failed = function (run) {
    this.progress(run);
    this.busy(false);
    this.error(this.ui.t('backfill.failed', {reason: run.error || this.ui.t('backfill.no_reason')}));
  };

  function skippedTotal(run) {
    var s = run.skipped || {};
    return (s.no_email || 0) + (s.invalid_email || 0) + (s.no_consent || 0) + (s.opted_out || 0);
  }

  // The preview in plain words, one line per kind of lead.
  Backfill.prototype.summaryLines = function (run) {
    var self = this;
    var s = run.skipped || {};
    var lines = [];
    var line = function (kind, text) {
      lines.push($('<li>').attr('data-kind', kind).text(text));
    };
    line('new', this.count('backfill.new', run.new_subscribers || 0));
    var existing = this.count('backfill.existing', run.existing || 0);
    if (run.already_opted_out) {
      existing += ' ' + this.count('backfill.existing_opted_out', run.already_opted_out);
    }
    line('existing', existing);
    if (run.duplicates) {
      line('duplicates', this.count('backfill.duplicates', run.duplicates));
    }
    var skipped = [['no_email', 'backfill.no_email'], ['invalid_email', 'backfill.invalid_email'],
      ['no_consent', 'backfill.no_consent'], ['opted_out', 'backfill.opted_out']]
      .filter(function (pair) { return s[pair[0]] > 0; })
      .map(function (pair) { return self.count(pair[1], s[pair[0]]); });
    line('skipped', skipped.length ? this.ui.t('backfill.skipped', {list: skipped.join(', ')})
      : this.ui.t('backfill.skipped_none'));
    if (run.errors) {
      line('errors', this.count('backfill.errors', run.errors));
    }
    return lines;
  };

  Backfill.prototype.showPreview = function (run) {
    var ui = this.ui;
    this.preview = run;
    this.$summary.empty().show().attr({'data-total': run.total || 0, 'data-new': run.new_subscribers || 0,
      'data-existing': run.existing || 0}).append(
      $('<p class="mailsync__backfill-lead">').text(this.count('backfill.total', run.total || 0)),
      $('<ul class="mailsync__backfill-lines">').append(this.summaryLines(run)));
    if (!run.total) {
      this.$choice.hide();
      return;
    }
    this.renderChoice();
  };

  Backfill.prototype.renderChoice = function () {
    var self = this;
    var ui = this.ui;
    var run = this.preview;
    var vars = {provider: this.providerName(), n: ui.number(run.new_subscribers || 0),
      existing: ui.number(run.existing || 0)};
    var $options = CHOICES.map(function (choice) {
      var id = 'ms-backfill-choice-' + choice;
      return $('<label class="mailsync__radio">').attr('for', id).append(
        $('<input type="radio" name="ms_backfill_choice" data-ms="backfill-choice">')
          .attr({id: id, value: choice}).prop('checked', self.choice === choice),
        $('<span class="mailsync__radio-text">').append(
          $('<span class="mailsync__radio-title">').text(ui.t('backfill.choice_' + choice)),
          $('<span class="mailsync__radio-hint">').text(ui.t('backfill.choice_' + choice + '_hint', vars))));
    });
    this.$warning = $('<p class="mailsync__warning" data-ms="backfill-warning">');
    this.$choice.empty().show().append(
      $('<legend class="mailsync__label">').text(this.count('backfill.choose', run.new_subscribers || 0)),
      $options, this.$warning,
      $('<div class="mailsync__toolbar">').append(
        ui.button('ms_backfill_start', ui.t('backfill.start'), 'backfill-start', 'button-input_blue')));
    this.renderWarning();
    this.busy(false);
  };

  // Syncing subscribes people: say what this choice will do before the button, in numbers.
  Backfill.prototype.renderWarning = function () {
    if (!this.$warning || !this.preview) {
      return;
    }
    var run = this.preview;
    var vars = {provider: this.providerName(), n: this.ui.number(run.new_subscribers || 0),
      existing: this.ui.number(run.existing || 0)};
    var key = 'backfill.warning_' + (this.choice || 'none');
    var one = run.new_subscribers === 1 && this.ui.has(key + '_one');
    this.$warning.text(this.ui.t(one ? key + '_one' : key, vars))
      .toggleClass('mailsync__warning_strong', this.choice === 'subscribed' || !this.choice);
    this.$el.find('[data-ms="backfill-start"]').prop('disabled', !this.choice);
  };

  // The real run's outcome. A run that subscribes (or asks to confirm) does not ask the platform
  // which addresses are new, so its counts of new and existing people may be missing.
  Backfill.prototype.showResult = function (run) {
    var ui = this.ui;
    var choice = CHOICES.indexOf(run.new_subscribers_as) >= 0 ? run.new_subscribers_as : 'subscribed';
    var counted = (run.new_subscribers || 0) + (run.existing || 0) > 0;
    var parts = [];
    if (counted || choice === 'skip') {
      parts.push(this.count('backfill.result_new_' + choice, run.new_subscribers || 0),
        this.count('backfill.result_existing', run.existing || 0));
    } else {
      parts.push(ui.t('backfill.result_new_' + choice + '_all'));
    }
    var skipped = skippedTotal(run) + (run.duplicates || 0);
    if (skipped) {
      parts.push(this.count('backfill.result_skipped', skipped));
    }
    if (run.errors) {
      parts.push(this.count('backfill.result_errors', run.errors));
    }
    this.$progress.show().attr({'data-state': 'done', 'data-done': run.done || 0});
    this.$progress.find('.mailsync__progress-label').text(this.count('backfill.result', run.done || 0));
    this.$result.show().attr({'data-state': run.errors ? 'errors' : 'ok', 'data-choice': choice})
      .text(parts.join(' '));
  };

  Backfill.prototype.destroy = function () {
    this.stop();
    this.$el.remove();
  };

  return Backfill;
});
