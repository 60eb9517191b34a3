// Step 3 of the settings modal: one row per stage of every pipeline (Won and Lost included),
// the "Suggest a mapping" lifecycle, and segments created on save only.
define(['jquery'], function ($) {
  'use strict';

  var WON = 142;
  var LOST = 143;
  var NEW_SEGMENT = '__new__';
  var ACTIONS = ['', 'segment', 'remove', 'unsubscribe'];
  // Not translated: segments live in the shared ESP account, whose Kommo users may read Kommo
  // in different languages, and one lifecycle must not become three sets of segments.
  var LIFECYCLE_NAMES = {new_lead: 'New Lead', in_progress: 'In Progress', customer: 'Customer',
    lost_lead: 'Lost Lead'};

  // The classic lifecycle for one pipeline: first stage, middle stages, Won, Lost.
  function lifecycle(pipeline) {
    var open = pipeline.stages.filter(function (s) { return s.id !== WON && s.id !== LOST; });
    return pipeline.stages.map(function (stage) {
      var role = stage.id === WON ? 'customer' : stage.id === LOST ? 'lost_lead'
        : stage.id === (open[0] && open[0].id) ? 'new_lead' : 'in_progress';
      return {stage: stage, role: role};
    });
  }

  function key(pipelineId, statusId) {
    return pipelineId + ':' + statusId;
  }

  function MappingTable(ui, onChange) {
    this.ui = ui;
    this.onChange = onChange;
    this.pipelines = [];
    this.segments = [];   // [{id, name, pending?}]; pending ones exist only until save
    this.rows = {};       // key -> {action, segment_id}
    this.$el = $('<div class="mailsync__mapping" data-ms="mapping-table">');
    this.bind();
  }

  MappingTable.prototype.load = function (pipelines, segments, rules) {
    var rows = {};
    (rules || []).forEach(function (r) {
      rows[key(r.pipeline_id, r.status_id)] = {action: r.action, segment_id: r.segment_id || ''};
    });
    this.pipelines = pipelines || [];
    this.segments = (segments || []).map(function (s) { return {id: String(s.id), name: s.name}; });
    // A segment deleted at the platform since the last save: the row asks for a new choice.
    var known = this.segments.map(function (s) { return s.id; });
    Object.keys(rows).forEach(function (k) {
      if (rows[k].segment_id && known.indexOf(String(rows[k].segment_id)) < 0) {
        rows[k].segment_id = '';
      }
    });
    this.rows = rows;
    this.render();
  };

  MappingTable.prototype.row = function (pipelineId, statusId) {
    return this.rows[key(pipelineId, statusId)] || {action: '', segment_id: ''};
  };

  MappingTable.prototype.segmentNamed = function (name) {
    var wanted = name.trim().toLowerCase();
    return this.segments.filter(function (s) { return s.name.trim().toLowerCase() === wanted; })[0];
  };

  // An existing segment of that name, or a pending one that save() creates.
  MappingTable.prototype.ensureSegment = function (name) {
    var found = this.segmentNamed(name);
    if (!found) {
      found = {id: 'new:' + name.trim(), name: name.trim(), pending: true};
      this.segments.push(found);
    }
    return found;
  };

  MappingTable.prototype.suggest = function () {
    var self = this;
    this.pipelines.forEach(function (pipeline) {
      lifecycle(pipeline).forEach(function (item) {
        var segment = self.ensureSegment(LIFECYCLE_NAMES[item.role]);
        self.rows[key(pipeline.id, item.stage.id)] = {action: 'segment', segment_id: segment.id};
      });
    });
    this.render();
    this.onChange();
  };

  MappingTable.prototype.segmentItems = function () {
    var ui = this.ui;
    var items = [{id: '', option: ui.t('mapping.choose_segment')}];
    this.segments.forEach(function (s) {
      items.push({id: s.id, option: s.pending ? ui.t('mapping.pending', {name: s.name}) : s.name});
    });
    items.push({id: NEW_SEGMENT, option: ui.t('mapping.create_new')});
    return items;
  };

  MappingTable.prototype.render = function () {
    var self = this;
    this.$el.empty();
    if (!this.pipelines.length) {
      this.$el.append($('<p class="mailsync__hint">').text(this.ui.t('mapping.no_pipelines')));
      return;
    }
    this.pipelines.forEach(function (pipeline) {
      var $table = $('<table class="mailsync__table">').attr('data-pipeline-id', pipeline.id);
      $table.append($('<caption>').text(self.ui.t('mapping.pipeline', {name: pipeline.name})));
      $table.append($('<tr>').append(
        $('<th>').text(self.ui.t('mapping.stage')), $('<th>').text(self.ui.t('mapping.action')),
        $('<th>').text(self.ui.t('mapping.segment'))));
      pipeline.stages.forEach(function (stage) {
        $table.append(self.renderRow(pipeline, stage));
      });
      self.$el.append($table);
    });
  };

  MappingTable.prototype.renderRow = function (pipeline, stage) {
    var ui = this.ui;
    var row = this.row(pipeline.id, stage.id);
    var name = 'ms_' + pipeline.id + '_' + stage.id;
    var actions = ACTIONS.map(function (a) {
      return {id: a, option: ui.t('mapping.' + ({'': 'do_nothing', segment: 'move'}[a] || a))};
    });
    var $stage = $('<td class="mailsync__stage">').append(
      $('<span class="mailsync__dot">').css('background-color', stage.color || '#ccc'),
      $('<span>').text(stage.name));
    var $segment = $('<td class="mailsync__segment-cell">');
    if (row.action === 'segment') {
      $segment.append(ui.select(name + '_segment', this.segmentItems(), row.segment_id, 'stage-segment'));
    }
    return $('<tr data-ms="stage-row">').attr({'data-pipeline-id': pipeline.id, 'data-status-id': stage.id})
      .append($stage, $('<td>').append(ui.select(name + '_action', actions, row.action, 'stage-action')),
        $segment);
  };

  MappingTable.prototype.rerenderRow = function ($tr) {
    var pipelineId = Number($tr.attr('data-pipeline-id'));
    var statusId = Number($tr.attr('data-status-id'));
    var pipeline = this.pipelines.filter(function (p) { return p.id === pipelineId; })[0];
    var stage = pipeline.stages.filter(function (s) { return s.id === statusId; })[0];
    $tr.replaceWith(this.renderRow(pipeline, stage));
  };

  MappingTable.prototype.bind = function () {
    var self = this;
    this.$el.on('change', '[data-ms="stage-action"]', function () {
      var $tr = $(this).closest('tr');
      var row = self.row($tr.attr('data-pipeline-id'), $tr.attr('data-status-id'));
      self.rows[key($tr.attr('data-pipeline-id'), $tr.attr('data-status-id'))] =
        {action: $(this).val() || '', segment_id: row.segment_id};
      self.rerenderRow($tr);
      self.onChange();
    });
    this.$el.on('change', '[data-ms="stage-segment"]', function () {
      var $tr = $(this).closest('tr');
      var value = $(this).val() || '';
      if (value === NEW_SEGMENT) {
        self.askName($tr);
        return;
      }
      self.rows[key($tr.attr('data-pipeline-id'), $tr.attr('data-status-id'))] =
        {action: 'segment', segment_id: value};
      self.onChange();
    });
  };

  // "Create new…": an inline name field in the row; the segment is created when the admin saves.
  MappingTable.prototype.askName = function ($tr) {
    var self = this;
    var ui = this.ui;
    var $cell = $tr.find('.mailsync__segment-cell').empty();
    var $name = ui.input('ms_new_segment', '', ui.t('mapping.new_name'), 'new-segment-name');
    var $add = ui.button('ms_new_segment_add', ui.t('common.add'), 'new-segment-add');
    var $cancel = ui.button('ms_new_segment_cancel', ui.t('common.cancel'), 'new-segment-cancel',
      'mailsync__button_plain');
    $cell.append($('<div class="mailsync__inline">').append($name, $add, $cancel));
    var rowKey = key($tr.attr('data-pipeline-id'), $tr.attr('data-status-id'));
    function finish(save) {
      var text = String($cell.find('[data-ms="new-segment-name"]').val() || '').trim();
      if (save && !text) {
        return;
      }
      if (save) {
        self.rows[rowKey] = {action: 'segment', segment_id: self.ensureSegment(text).id};
      }
      self.render();
      self.onChange();
    }
    $cell.find('[data-ms="new-segment-add"]').on('click', function (e) { e.preventDefault(); finish(true); });
    $cell.find('[data-ms="new-segment-cancel"]').on('click', function (e) { e.preventDefault(); finish(false); });
    $cell.find('[data-ms="new-segment-name"]').on('keydown', function (e) {
      if (e.key === 'Enter') {
        e.preventDefault();
        finish(true);
      }
    }).trigger('focus');
  };

  // Rules as the backend wants them; an unfinished "move to segment" row is the admin's mistake.
  MappingTable.prototype.rules = function () {
    var self = this;
    var rules = [];
    this.pipelines.forEach(function (pipeline) {
      pipeline.stages.forEach(function (stage) {
        var row = self.row(pipeline.id, stage.id);
        if (!row.action) {
          return;
        }
        if (row.action === 'segment' && !row.segment_id) {
          throw new Error(self.ui.t('mapping.missing_segment', {stage: stage.name, pipeline: pipeline.name}));
        }
        var rule = {pipeline_id: pipeline.id, status_id: stage.id, action: row.action};
        if (row.action === 'segment') {
          rule.segment_id = row.segment_id;
        }
        rules.push(rule);
      });
    });
    return rules;
  };

  MappingTable.prototype.pendingSegment = function (id) {
    return this.segments.filter(function (s) { return s.pending && s.id === id; })[0];
  };

  // After a pending segment was created at the ESP: point every row at its real id.
  MappingTable.prototype.resolvePending = function (pendingId, created) {
    var self = this;
    this.segments = this.segments.map(function (s) {
      return s.id === pendingId ? {id: String(created.id), name: created.name} : s;
    });
    Object.keys(this.rows).forEach(function (k) {
      if (self.rows[k].segment_id === pendingId) {
        self.rows[k].segment_id = String(created.id);
      }
    });
  };

  MappingTable.lifecycle = lifecycle;
  return MappingTable;
});
